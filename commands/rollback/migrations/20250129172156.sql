-- Rollback of 20250129172156_add_custom_access_token_hook: remove the hook.
-- Logins fall back to querying users for account_uuid and role.
DROP FUNCTION IF EXISTS public.custom_access_token_hook(jsonb);
