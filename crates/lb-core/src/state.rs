//! Shared-state traits: limits, concurrency and budget counters (being written).
