//! Kubernetes-style status conditions shared by every Runnel resource.
//!
//! The contract that keeps reconciles quiet: a condition's `lastTransitionTime` changes
//! only when its `status` changes, so a status written twice with the same meaning is
//! byte-for-byte the same and does not retrigger the watch.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The three values a condition's `status` may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell.
    Unknown,
}

impl ConditionStatus {
    /// The API spelling (`"True"`, `"False"`, `"Unknown"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    /// `True` when `holds`, else `False`.
    pub fn from_bool(holds: bool) -> Self {
        if holds {
            Self::True
        } else {
            Self::False
        }
    }
}

/// Sets the condition `type_` in `conditions` (keeping the list sorted by type).
///
/// `lastTransitionTime` is taken from the existing condition of that type when the status
/// is unchanged, and is `now` otherwise.
pub fn upsert_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: &Time,
) {
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(old) if old.status == status.as_str() => old.last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message,
        observed_generation,
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = condition,
        None => {
            conditions.push(condition);
            conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
    }
}

/// The condition `type_` of `new` when it has `status` and `old` did not have it with
/// the same reason and message: a problem that just appeared or changed, worth one
/// Warning Event (a condition that stays as it was is not announced again).
pub fn newly<'a>(
    old: &[Condition],
    new: &'a [Condition],
    type_: &str,
    status: ConditionStatus,
) -> Option<&'a Condition> {
    let current = new
        .iter()
        .find(|c| c.type_ == type_ && c.status == status.as_str())?;
    let unchanged = old.iter().any(|c| {
        c.type_ == type_
            && c.status == current.status
            && c.reason == current.reason
            && c.message == current.message
    });
    (!unchanged).then_some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap_or_default())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = Vec::new();
        upsert_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "Starting",
            "0/3".into(),
            Some(1),
            &at(10),
        );
        upsert_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "Starting",
            "1/3".into(),
            Some(1),
            &at(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].last_transition_time,
            at(10),
            "same status keeps the old time"
        );
        assert_eq!(conditions[0].message, "1/3", "the message still updates");

        upsert_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::True,
            "AllBrokersReady",
            "3/3".into(),
            Some(2),
            &at(30),
        );
        assert_eq!(
            conditions[0].last_transition_time,
            at(30),
            "a new status takes the new time"
        );
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn newly_announces_a_problem_once_and_again_when_it_changes() {
        let set = |status, reason: &str, message: &str| {
            let mut conditions = Vec::new();
            upsert_condition(
                &mut conditions,
                "Degraded",
                status,
                reason,
                message.into(),
                Some(1),
                &at(1),
            );
            conditions
        };
        let fine = set(ConditionStatus::False, "AsExpected", "");
        let broken = set(ConditionStatus::True, "BrokerFailed", "demo-1");
        let worse = set(ConditionStatus::True, "BrokerFailed", "demo-1, demo-2");
        let degraded = |old: &[Condition], new: &[Condition]| {
            newly(old, new, "Degraded", ConditionStatus::True).map(|c| c.message.clone())
        };
        assert_eq!(degraded(&[], &broken), Some("demo-1".into()));
        assert_eq!(degraded(&fine, &broken), Some("demo-1".into()));
        assert_eq!(degraded(&broken, &broken), None, "unchanged: said already");
        assert_eq!(degraded(&broken, &worse), Some("demo-1, demo-2".into()));
        assert_eq!(
            degraded(&broken, &fine),
            None,
            "recovered: nothing to warn about"
        );
    }

    #[test]
    fn conditions_stay_sorted_by_type() {
        let mut conditions = Vec::new();
        for type_ in ["Ready", "Degraded", "Progressing"] {
            upsert_condition(
                &mut conditions,
                type_,
                ConditionStatus::Unknown,
                "Init",
                String::new(),
                None,
                &at(1),
            );
        }
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Degraded", "Progressing", "Ready"]);
    }
}
