//! Strategy statistics shared through Redis, approximately: each instance
//! writes its loads once per interval and reads the others' in the same
//! round trip.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use lb_core::{DeploymentLoad, LoadExchange, StoreError};
use redis::Script;

/// KEYS[1]: this instance's hash; KEYS[2]: the set of instances.
/// ARGV: ttl ms, key prefix of the hashes, this instance, then field/value
/// pairs. Returns the other live instances' field/value pairs, flattened;
/// instances whose hash expired leave the set.
static EXCHANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if #ARGV > 3 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
redis.call('SADD', KEYS[2], ARGV[3])
local out = {}
for _, inst in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if inst ~= ARGV[3] then
    local h = redis.call('HGETALL', ARGV[2] .. inst)
    if #h == 0 then
      redis.call('SREM', KEYS[2], inst)
    else
      for j = 1, #h do out[#out + 1] = h[j] end
    end
  end
end
return out
",
    )
});

/// [`LoadExchange`] over Redis: one `EVALSHA` per interval per instance.
pub struct RedisLoadExchange {
    conn: crate::LazyConn,
    prefix: String,
    instance: String,
}

impl std::fmt::Debug for RedisLoadExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the prefix is shown.
        f.debug_struct("RedisLoadExchange")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLoadExchange {
    /// An exchange on `url` under `key_prefix`; connects on first use.
    pub fn new(url: &str, key_prefix: &str) -> Self {
        Self {
            conn: crate::LazyConn::new(url),
            prefix: key_prefix.to_owned(),
            instance: crate::instance_id(),
        }
    }
}

fn encode(l: &DeploymentLoad) -> String {
    let f = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x}"));
    format!(
        "{},{},{},{}",
        l.in_flight,
        f(l.latency),
        f(l.ttft),
        f(l.peak_ewma)
    )
}

/// Sums (in flight) and means (latencies) over instances, per deployment.
fn merge(pairs: &[String]) -> Vec<DeploymentLoad> {
    #[derive(Default)]
    struct Acc {
        in_flight: u64,
        sums: [(f64, u32); 3],
    }
    let mut by: HashMap<&str, Acc> = HashMap::new();
    for pair in pairs.chunks_exact(2) {
        let mut parts = pair[1].split(',');
        let acc = by.entry(pair[0].as_str()).or_default();
        acc.in_flight = acc
            .in_flight
            .saturating_add(parts.next().and_then(|v| v.parse().ok()).unwrap_or(0));
        for slot in &mut acc.sums {
            if let Some(v) = parts
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
            {
                slot.0 += v;
                slot.1 += 1;
            }
        }
    }
    let mean = |(sum, n): (f64, u32)| (n > 0).then(|| sum / f64::from(n));
    let mut out: Vec<DeploymentLoad> = by
        .into_iter()
        .map(|(id, a)| DeploymentLoad {
            deployment: id.to_owned(),
            in_flight: a.in_flight,
            latency: mean(a.sums[0]),
            ttft: mean(a.sums[1]),
            peak_ewma: mean(a.sums[2]),
        })
        .collect();
    out.sort_by(|a, b| a.deployment.cmp(&b.deployment));
    out
}

#[async_trait::async_trait]
impl LoadExchange for RedisLoadExchange {
    async fn exchange(
        &self,
        mine: Vec<DeploymentLoad>,
        ttl: Duration,
    ) -> Result<Vec<DeploymentLoad>, StoreError> {
        let mut conn = self.conn.get().await?;
        let hashes = format!("{}:load:", self.prefix);
        let mut invocation = EXCHANGE.prepare_invoke();
        invocation
            .key(format!("{hashes}{}", self.instance))
            .key(format!("{}:load-instances", self.prefix))
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(&hashes)
            .arg(&self.instance);
        for l in &mine {
            invocation.arg(&l.deployment).arg(encode(l));
        }
        let pairs: Vec<String> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| crate::store_error("load exchange", &e))?;
        Ok(merge(&pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_in_flight_and_averages_latencies() {
        let pairs: Vec<String> = [
            ("a", "2,0.5,,1"),
            ("b", "1,,,"),
            ("a", "3,1.5,0.2,"),
            ("a", "x,nan,,"),
        ]
        .iter()
        .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
        .collect();
        let m = merge(&pairs);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].deployment, "a");
        assert_eq!(m[0].in_flight, 5);
        assert_eq!(m[0].latency, Some(1.0));
        assert_eq!(m[0].ttft, Some(0.2));
        assert_eq!(m[0].peak_ewma, Some(1.0));
        assert_eq!((m[1].in_flight, m[1].latency), (1, None));
        let one = DeploymentLoad {
            deployment: "a".into(),
            in_flight: 4,
            latency: Some(0.25),
            ttft: None,
            peak_ewma: Some(2.0),
        };
        assert_eq!(encode(&one), "4,0.25,,2");
    }
}
