//! cluster-state
