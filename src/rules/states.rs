//! State words: what users see and scripts match for a process state
//! (`pmd list -o json` `status`, `--status` filters), a health state and
//! how an instance's processes are tracked.

use crate::v1;

impl v1::ProcessState {
    /// The word users see and scripts match (`pmd list -o json` `status`).
    pub fn word(self) -> &'static str {
        use v1::ProcessState as S;
        match self {
            S::Unspecified => "unknown",
            S::Starting => "starting",
            S::Online => "online",
            S::Stopping => "stopping",
            S::Stopped => "stopped",
            S::Errored => "errored",
            S::WaitingRestart => "waiting-restart",
        }
    }

    /// Inverse of [`Self::word`].
    pub fn from_word(word: &str) -> Option<Self> {
        use v1::ProcessState as S;
        [
            S::Starting,
            S::Online,
            S::Stopping,
            S::Stopped,
            S::Errored,
            S::WaitingRestart,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }
}

impl v1::HealthState {
    /// The word users see and scripts match (`health`); None when the app
    /// has no health check.
    pub fn word(self) -> Option<&'static str> {
        use v1::HealthState as H;
        match self {
            H::Unspecified => None,
            H::Unknown => Some("unknown"),
            H::Healthy => Some("healthy"),
            H::Unhealthy => Some("unhealthy"),
        }
    }
}

impl v1::Tracking {
    /// The word users see and scripts match (`tracking`): `cgroup` or
    /// `process-group`.
    pub fn word(self) -> &'static str {
        use v1::Tracking as T;
        match self {
            T::Unspecified => "unknown",
            T::Cgroup => "cgroup",
            T::ProcessGroup => "process-group",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_round_trip() {
        for w in [
            "starting",
            "online",
            "stopping",
            "stopped",
            "errored",
            "waiting-restart",
        ] {
            assert_eq!(v1::ProcessState::from_word(w).unwrap().word(), w);
        }
        assert_eq!(v1::HealthState::Unspecified.word(), None);
        assert_eq!(v1::HealthState::Unhealthy.word(), Some("unhealthy"));
        assert_eq!(v1::Tracking::Cgroup.word(), "cgroup");
        assert_eq!(v1::Tracking::ProcessGroup.word(), "process-group");
    }
}
