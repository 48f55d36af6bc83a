//! Phases and conditions (engine.md §9, coordinator.md §6, lifecycle.md §2–§3), the same rules
//! for engines and coordinators.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use lmcache_api::constants::{conditions, phases, reasons};

/// Sets condition `type_` in `conditions`, keeping its `lastTransitionTime` unless its status
/// flips. A new condition is appended.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let new = |last_transition_time: Time| Condition {
        last_transition_time,
        message: message.to_string(),
        observed_generation: Some(generation),
        reason: reason.to_string(),
        status: status.to_string(),
        type_: type_.to_string(),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let since = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                now.clone()
            };
            *existing = new(since);
        }
        None => conditions.push(new(now.clone())),
    }
}

/// `Pending` / `Running` / `Degraded` from desired and ready counts.
pub fn phase(desired: i32, ready: i32) -> &'static str {
    if desired == 0 {
        phases::PENDING
    } else if ready >= desired {
        phases::RUNNING
    } else if ready > 0 {
        phases::DEGRADED
    } else {
        phases::PENDING
    }
}

/// What an engine counts (DaemonSet pods) or a coordinator counts (Deployment replicas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Engines: `instances`, `NoReadyInstances`.
    Instances,
    /// Coordinators: `replicas`, `NoReadyReplicas`.
    Replicas,
}

impl Unit {
    fn noun(self) -> &'static str {
        match self {
            Self::Instances => "instances",
            Self::Replicas => "replicas",
        }
    }

    fn none_ready(self) -> &'static str {
        match self {
            Self::Instances => reasons::NO_READY_INSTANCES,
            Self::Replicas => reasons::NO_READY_REPLICAS,
        }
    }
}

/// A child the API server rejected (lifecycle.md §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyFailure {
    /// `<Kind> <namespace>/<name>: <API message>`, joined with `; ` for several children.
    pub message: String,
    /// The workload, a Service or the ConfigMap was rejected (a ServiceMonitor alone is not).
    pub affects_phase: bool,
}

/// Counts and the not-ready detail of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Desired instances or replicas.
    pub desired: i32,
    /// Ready instances or replicas.
    pub ready: i32,
    /// Why pods are not ready (`node/pod: reason; ...`), empty when none is known.
    pub not_ready: String,
}

/// The phase and the conditions of a usable spec, in the order `Available`,
/// `AllInstancesReady`, `ConfigValid`, `Ready`; timestamps carried over from `old`.
pub fn usable(
    old: Option<&Vec<Condition>>,
    unit: Unit,
    observed: &Observed,
    failure: Option<&ApplyFailure>,
    generation: i64,
    now: &Time,
) -> (&'static str, Vec<Condition>) {
    let Observed {
        desired,
        ready,
        not_ready,
    } = observed;
    let (desired, ready) = (*desired, *ready);
    let counts = format!("{ready}/{desired} {} ready", unit.noun());
    let detailed = if not_ready.is_empty() {
        counts.clone()
    } else {
        format!("{counts}; {not_ready}")
    };
    let all_ready = desired > 0 && ready >= desired;
    let count_phase = phase(desired, ready);
    let phase = match failure {
        Some(f) if f.affects_phase => phases::FAILED,
        _ => count_phase,
    };
    let (ready_status, ready_reason, mut ready_message) = match failure {
        Some(f) if f.affects_phase => (false, reasons::APPLY_FAILED, f.message.clone()),
        _ if phase == phases::RUNNING => (true, reasons::RUNNING, detailed.clone()),
        _ if desired == 0 => (false, reasons::PENDING, detailed.clone()),
        _ if ready == 0 => (false, unit.none_ready(), detailed.clone()),
        _ => (false, reasons::NOT_ALL_READY, detailed.clone()),
    };
    if let Some(f) = failure.filter(|f| !f.affects_phase) {
        ready_message = format!("{ready_message}; {}", f.message);
    }

    let old = old.cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(4);
    let mut set = |type_: &str, status: bool, reason: &str, message: &str| {
        out.extend(old.iter().find(|c| c.type_ == type_).cloned());
        set_condition(&mut out, type_, status, reason, message, generation, now);
    };
    set(
        conditions::AVAILABLE,
        ready >= 1,
        if ready >= 1 {
            reasons::AT_LEAST_ONE_READY
        } else {
            unit.none_ready()
        },
        &counts,
    );
    set(
        conditions::ALL_INSTANCES_READY,
        all_ready,
        if all_ready {
            reasons::ALL_READY
        } else {
            reasons::NOT_ALL_READY
        },
        &detailed,
    );
    set(
        conditions::CONFIG_VALID,
        true,
        reasons::VALID,
        reasons::VALID_MESSAGE,
    );
    set(conditions::READY, ready_status, ready_reason, &ready_message);
    (phase, out)
}

/// The conditions of an unusable spec (validation, a missing coordinator, a name conflict):
/// `ConfigValid` and `Ready` become `False` with `reason`; the other conditions keep their
/// values; `Ready` stays last.
pub fn unusable(
    old: Option<&Vec<Condition>>,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) -> Vec<Condition> {
    let mut out = old.cloned().unwrap_or_default();
    set_condition(
        &mut out,
        conditions::CONFIG_VALID,
        false,
        reason,
        message,
        generation,
        now,
    );
    set_condition(
        &mut out,
        conditions::READY,
        false,
        reason,
        message,
        generation,
        now,
    );
    if let Some(at) = out.iter().position(|c| c.type_ == conditions::READY) {
        let ready = out.remove(at);
        out.push(ready);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn observed(desired: i32, ready: i32, not_ready: &str) -> Observed {
        Observed {
            desired,
            ready,
            not_ready: not_ready.to_string(),
        }
    }

    fn find<'a>(c: &'a [Condition], type_: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn summary(c: &[Condition], type_: &str) -> (String, String, String) {
        let c = find(c, type_);
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn s(status: &str, reason: &str, message: &str) -> (String, String, String) {
        (status.into(), reason.into(), message.into())
    }

    #[test]
    fn ready_follows_the_phase_with_a_reason() {
        let cases = [
            (
                observed(3, 3, ""),
                "Running",
                s("True", "Running", "3/3 instances ready"),
            ),
            (
                observed(3, 1, "n2/p2: ImagePullBackOff"),
                "Degraded",
                s(
                    "False",
                    "NotAllReady",
                    "1/3 instances ready; n2/p2: ImagePullBackOff",
                ),
            ),
            (
                observed(3, 0, "p0: Unschedulable: 0/4 nodes are available"),
                "Pending",
                s(
                    "False",
                    "NoReadyInstances",
                    "0/3 instances ready; p0: Unschedulable: 0/4 nodes are available",
                ),
            ),
            (
                observed(0, 0, ""),
                "Pending",
                s("False", "Pending", "0/0 instances ready"),
            ),
        ];
        for (input, want_phase, want_ready) in cases {
            let (phase, conds) = usable(None, Unit::Instances, &input, None, 1, &t(1));
            assert_eq!(phase, want_phase, "{input:?}");
            assert_eq!(summary(&conds, "Ready"), want_ready, "{input:?}");
            let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
            assert_eq!(types, ["Available", "AllInstancesReady", "ConfigValid", "Ready"]);
            // Available carries only the counts; AllInstancesReady the pod detail too.
            assert!(!find(&conds, "Available").message.contains(';'));
            assert_eq!(find(&conds, "AllInstancesReady").message, want_ready.2);
        }
        let (_, conds) = usable(None, Unit::Replicas, &observed(2, 0, ""), None, 1, &t(1));
        assert_eq!(
            summary(&conds, "Ready"),
            s("False", "NoReadyReplicas", "0/2 replicas ready")
        );
        assert_eq!(find(&conds, "Available").reason, "NoReadyReplicas");
    }

    #[test]
    fn a_rejected_workload_fails_the_phase_a_rejected_service_monitor_does_not() {
        let workload = ApplyFailure {
            message: "DaemonSet ns/x: spec.template...: Not found: \"data\"".into(),
            affects_phase: true,
        };
        let (phase, conds) = usable(
            None,
            Unit::Instances,
            &observed(3, 3, ""),
            Some(&workload),
            2,
            &t(1),
        );
        assert_eq!(phase, "Failed");
        assert_eq!(
            summary(&conds, "Ready"),
            s("False", "ApplyFailed", &workload.message)
        );
        assert_eq!(find(&conds, "ConfigValid").status, "True");
        assert_eq!(find(&conds, "Ready").observed_generation, Some(2));

        let monitor = ApplyFailure {
            message: "ServiceMonitor ns/x: denied by policy".into(),
            affects_phase: false,
        };
        let (phase, conds) = usable(
            None,
            Unit::Instances,
            &observed(3, 3, ""),
            Some(&monitor),
            2,
            &t(1),
        );
        assert_eq!(phase, "Running");
        assert_eq!(
            summary(&conds, "Ready"),
            s(
                "True",
                "Running",
                "3/3 instances ready; ServiceMonitor ns/x: denied by policy"
            )
        );
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let (_, first) = usable(None, Unit::Instances, &observed(3, 0, ""), None, 1, &t(10));
        let (_, same) = usable(
            Some(&first),
            Unit::Instances,
            &observed(3, 0, "p: X"),
            None,
            2,
            &t(20),
        );
        assert_eq!(find(&same, "Available").last_transition_time, t(10));
        assert_eq!(find(&same, "Ready").last_transition_time, t(10));
        assert_eq!(find(&same, "Available").observed_generation, Some(2));
        let (_, flipped) = usable(Some(&same), Unit::Instances, &observed(3, 3, ""), None, 2, &t(30));
        assert_eq!(find(&flipped, "Ready").last_transition_time, t(30));
        assert_eq!(find(&flipped, "ConfigValid").last_transition_time, t(10));
        // Recomputing with nothing changed gives equal conditions: no write.
        let (_, again) = usable(
            Some(&flipped),
            Unit::Instances,
            &observed(3, 3, ""),
            None,
            2,
            &t(40),
        );
        assert_eq!(again, flipped);
    }

    #[test]
    fn unusable_spec_sets_config_valid_and_ready_and_keeps_the_rest() {
        let (_, ok) = usable(None, Unit::Instances, &observed(1, 1, ""), None, 1, &t(10));
        let failed = unusable(Some(&ok), "ValidationFailed", "spec.l1.sizeGB: bad", 2, &t(20));
        assert_eq!(
            summary(&failed, "ConfigValid"),
            s("False", "ValidationFailed", "spec.l1.sizeGB: bad")
        );
        assert_eq!(
            summary(&failed, "Ready"),
            s("False", "ValidationFailed", "spec.l1.sizeGB: bad")
        );
        assert_eq!(find(&failed, "Available"), find(&ok, "Available"));
        assert_eq!(failed.last().unwrap().type_, "Ready");
        let fresh = unusable(None, "NameConflict", "m", 1, &t(5));
        let types: Vec<&str> = fresh.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["ConfigValid", "Ready"]);
    }
}
