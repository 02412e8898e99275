//! A step that read a relation its role cannot fully see. Its rows are
//! real and still shown, but "no rows" or "few rows" proves nothing, so it
//! reads could-not-check, naming the role and the relations; only a
//! finding among the rows it did see (too many rows, a value past a
//! threshold) outranks that.

use std::collections::BTreeSet;

use super::run::StepOutcome;
use super::verdict::{Verdict, judge_partial};
use crate::catalog::relations::Relation;
use crate::catalog::schema::StepDef;
use crate::targets::rls::{Visibility, some_of};
use crate::targets::{StepError, Target};

/// How many hidden relations a note names before "and N more".
const NAMED: usize = 5;

/// What the target's role sees of a diagnostic's relations, asked once per
/// run (and answered from the target's cache most of the time).
pub(super) struct Sight<'a> {
    target: &'a Target,
    relations: BTreeSet<Relation>,
    seen: Option<Result<Visibility, StepError>>,
}

impl<'a> Sight<'a> {
    pub(super) fn new(target: &'a Target, relations: BTreeSet<Relation>) -> Sight<'a> {
        Sight {
            target,
            relations,
            seen: None,
        }
    }

    /// Mark a step that ran when row-level security may hide rows of what
    /// it read (`reads`) from the target's role.
    pub(super) async fn mark(&mut self, out: &mut StepOutcome, step: &StepDef, reads: &BTreeSet<Relation>) {
        let ran = out.note.is_none() && !out.unreachable;
        if !ran || reads.is_empty() {
            return;
        }
        if self.seen.is_none() {
            self.seen = Some(self.target.visibility(&self.relations).await);
        }
        let note = match self.seen.as_ref().expect("just asked") {
            Ok(v) => blind_note(v, reads),
            Err(e) => Some(format!(
                "could not tell whether row-level security hides rows on {}: {e}",
                self.target.name
            )),
        };
        if let Some(note) = note {
            out.verdict = judge_partial(&step.judge, &out.table).max(Verdict::CouldNotCheck);
            out.note = Some(note);
        }
    }
}

/// "role `x` does not bypass row-level security on public.users; rows may
/// be missing", when it does not.
fn blind_note(v: &Visibility, reads: &BTreeSet<Relation>) -> Option<String> {
    let hidden = v.hidden_among(reads);
    (!hidden.is_empty()).then(|| {
        format!(
            "role `{}` does not bypass row-level security on {}; rows may be missing",
            v.role,
            some_of(&hidden, NAMED)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_role_and_what_it_cannot_see() {
        let users = Relation::new(Some("public"), "users");
        let flags = Relation::new(None, "feature_flags");
        let v = Visibility {
            role: "diag".into(),
            superuser: false,
            bypassrls: false,
            hidden: [(users.clone(), "public.users".to_string())].into(),
        };
        assert_eq!(
            blind_note(&v, &[users, flags.clone()].into()).as_deref(),
            Some("role `diag` does not bypass row-level security on public.users; rows may be missing")
        );
        assert_eq!(blind_note(&v, &[flags].into()), None);
    }
}
