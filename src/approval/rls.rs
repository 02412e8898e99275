//! An action whose plan reads rows that row-level security hides from the
//! target's role would show an incomplete plan: the approver would approve
//! fewer rows than the action's conditions cover, and nothing would say so.
//! Such a request is refused before anything is stored.

use crate::catalog::Entry;
use crate::error::UserError;
use crate::targets::Target;
use crate::targets::rls::some_of;

/// How many hidden relations the refusal names before "and N more".
const NAMED: usize = 5;

/// Refuse when the role cannot see every row of what the plan reads.
pub async fn refuse_if_blind(target: &Target, entry: &Entry) -> Result<(), UserError> {
    let reads = entry.reads.plan_all();
    if reads.is_empty() {
        return Ok(());
    }
    let v = target
        .visibility(&reads)
        .await
        .map_err(|e| UserError::new(format!("Target {} {e}; nothing was requested.", target.name)))?;
    let hidden = v.hidden();
    if hidden.is_empty() {
        return Ok(());
    }
    tracing::warn!(target_name = %target.name, role = %v.role, "refused an action whose plan row-level security would cut short");
    Err(UserError::new(format!(
        "Refusing: role `{}` cannot see all rows of {}; the plan could be incomplete.",
        v.role,
        some_of(&hidden, NAMED)
    )))
}
