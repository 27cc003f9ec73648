//! Latency windows and peak EWMA per deployment (being written).
