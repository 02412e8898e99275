-- Rollback of 20250129172156_add_custom_access_token_hook (runbook 000).
--
-- The runbook switches the Custom Access Token Hook off before the hook goes:
-- while Supabase Auth still calls it, dropping the function fails every
-- sign-in and token refresh. A database script cannot switch the hook off
-- (that is Dashboard → Authentication → Hooks), so this rollback does what
-- switching it off does: the hook stops adding claims and returns the event
-- unchanged, keeping its grants. Logins fall back to querying public.users for
-- account_uuid and role, as the runbook describes. Once the hook is off in the
-- dashboard, the function can be dropped.
CREATE OR REPLACE FUNCTION public.custom_access_token_hook(event jsonb) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT event $$;
