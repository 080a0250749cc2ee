//! Fault injection: model-name directives (`gpt-4o-mini+status=503`) and the control-API
//! fault slot (`POST /_mock/fault`), both turned into one [`Plan`] per request.
//!
//! Reference: none — faults are the mock's own feature. What a fault *looks like* on the wire
//! (error bodies, `retry-after`) is decided by the protocol modules (`openai.rs`, `azure.rs`),
//! which follow their providers' references. This module only decides *which* fault applies;
//! it must not build response bodies.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Map, Value};

/// One fault set through the control API or [`crate::MockServer::set_fault`].
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub mode: FaultMode,
    /// How many requests it still applies to; `None` means until cleared.
    pub count: Option<u64>,
}

/// What a fault does to a response.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultMode {
    /// Answer with this status and the protocol's error body; `retry_after` (seconds) adds a
    /// `retry-after` header.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Drop the connection without any response (TCP RST).
    Reset,
    /// Never answer.
    Hang,
    /// Answer 200 with a body that is not valid JSON (streams: one `data:` line of bad JSON).
    Malformed,
    /// Streams: send this many events, then abort the connection without `[DONE]`.
    /// Non-streamed answers: send half of the body, then abort.
    CutAfter(u32),
    /// Wait this many milliseconds before the response headers.
    Delay(u64),
}

impl Fault {
    /// A fault that applies until cleared.
    pub fn new(mode: FaultMode) -> Fault {
        Fault { mode, count: None }
    }

    /// A fault answering `status` until cleared.
    pub fn status(status: u16) -> Fault {
        Fault::new(FaultMode::Status {
            status,
            retry_after: None,
        })
    }

    /// Limits the fault to the next `count` requests.
    pub fn times(mut self, count: u64) -> Fault {
        self.count = Some(count);
        self
    }

    /// Parses a control-API body: `{"status":503,"count":5,"retry_after":1}`,
    /// `{"mode":"reset"}`, `{"mode":"hang"}`, `{"mode":"malformed"}`,
    /// `{"mode":"cut_after","n":3}` or `{"mode":"delay","ms":200}`.
    pub fn from_json(body: &Value) -> Result<Fault, String> {
        let obj = body
            .as_object()
            .ok_or_else(|| "the fault must be a JSON object".to_string())?;
        let count = optional_u64(obj, "count")?;
        let retry_after = optional_u64(obj, "retry_after")?;
        let status = optional_u64(obj, "status")?;
        let mode = match obj.get("mode").and_then(Value::as_str) {
            None | Some("status") => {
                let status = status.ok_or("a fault needs \"status\" or \"mode\"")?;
                FaultMode::Status {
                    status: error_status(status)?,
                    retry_after,
                }
            }
            Some("reset") => FaultMode::Reset,
            Some("hang") => FaultMode::Hang,
            Some("malformed") => FaultMode::Malformed,
            Some("cut_after") => {
                let n = optional_u64(obj, "n")?.ok_or("\"cut_after\" needs \"n\"")?;
                FaultMode::CutAfter(u32::try_from(n).map_err(|_| "\"n\" is too large")?)
            }
            Some("delay") => {
                let ms = optional_u64(obj, "ms")?.ok_or("\"delay\" needs \"ms\"")?;
                FaultMode::Delay(ms)
            }
            Some(other) => return Err(format!("unknown fault mode {other:?}")),
        };
        Ok(Fault { mode, count })
    }

    /// The fault in the control API's JSON form.
    pub fn to_json(&self) -> Value {
        let mut v = match &self.mode {
            FaultMode::Status {
                status,
                retry_after,
            } => json!({"mode": "status", "status": status, "retry_after": retry_after}),
            FaultMode::Reset => json!({"mode": "reset"}),
            FaultMode::Hang => json!({"mode": "hang"}),
            FaultMode::Malformed => json!({"mode": "malformed"}),
            FaultMode::CutAfter(n) => json!({"mode": "cut_after", "n": n}),
            FaultMode::Delay(ms) => json!({"mode": "delay", "ms": ms}),
        };
        if let Some(obj) = v.as_object_mut() {
            obj.insert("count".into(), json!(self.count));
        }
        v
    }
}

fn optional_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("\"{key}\" must be a non-negative integer")),
    }
}

fn error_status(status: u64) -> Result<u16, String> {
    match u16::try_from(status) {
        Ok(s @ 400..=599) => Ok(s),
        _ => Err(format!("status {status} is not an error status (400-599)")),
    }
}

/// Everything that bends one response, merged from directives and the control fault.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Error status to answer with (gated by `fail_rate` when that is set).
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    /// Probability of answering with the error status (500 unless `status` says otherwise).
    pub fail_rate: Option<f64>,
    /// Pause before the response headers.
    pub delay: Duration,
    /// Pause between stream events.
    pub chunk_delay: Duration,
    pub cut_after: Option<u32>,
    pub malformed: bool,
    pub reset: bool,
    pub hang: bool,
    /// Answer OpenAI's 400 `context_length_exceeded`.
    pub context_length: bool,
}

impl Plan {
    /// Overlays one control-API fault on this plan.
    pub fn apply(&mut self, mode: &FaultMode) {
        match mode {
            FaultMode::Status {
                status,
                retry_after,
            } => {
                self.status = Some(*status);
                self.retry_after = *retry_after;
                self.fail_rate = None;
            }
            FaultMode::Reset => self.reset = true,
            FaultMode::Hang => self.hang = true,
            FaultMode::Malformed => self.malformed = true,
            FaultMode::CutAfter(n) => self.cut_after = Some(*n),
            FaultMode::Delay(ms) => self.delay = Duration::from_millis(*ms),
        }
    }

    /// Overlays another plan (the control fault) on this one (the directives).
    pub fn merge(&mut self, other: &Plan) {
        if other.status.is_some() {
            self.status = other.status;
            self.retry_after = other.retry_after;
            self.fail_rate = other.fail_rate;
        }
        if !other.delay.is_zero() {
            self.delay = other.delay;
        }
        if !other.chunk_delay.is_zero() {
            self.chunk_delay = other.chunk_delay;
        }
        self.cut_after = other.cut_after.or(self.cut_after);
        self.malformed |= other.malformed;
        self.reset |= other.reset;
        self.hang |= other.hang;
        self.context_length |= other.context_length;
    }

    /// The error status this request must answer with, rolling the dice for `fail_rate`.
    pub fn error_status(&self) -> Option<u16> {
        match self.fail_rate {
            Some(rate) if fastrand::f64() < rate => Some(self.status.unwrap_or(500)),
            Some(_) => None,
            None => self.status,
        }
    }
}

/// Splits `model+directive+...` into the base name and the plan the directives describe.
///
/// Directives: `status=N`, `retry_after=S`, `delay_ms=N`, `chunk_delay_ms=N`, `drip_ms=N`
/// (same as `chunk_delay_ms`), `cut_after=N`, `fail_rate=F`, and the flags `malformed`,
/// `reset`, `hang`, `context_length`. An unknown directive is an error, so a typo cannot pass silently.
pub fn parse_model(model: &str) -> Result<(String, Plan), String> {
    let mut parts = model.split('+');
    let base = parts.next().unwrap_or_default().to_string();
    let mut plan = Plan::default();
    for directive in parts {
        let (key, value) = match directive.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (directive, None),
        };
        let number = || -> Result<u64, String> {
            value
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("mock directive '{directive}' needs an integer value"))
        };
        match key {
            "status" => plan.status = Some(error_status(number()?)?),
            "retry_after" => plan.retry_after = Some(number()?),
            "delay_ms" => plan.delay = Duration::from_millis(number()?),
            "chunk_delay_ms" | "drip_ms" => plan.chunk_delay = Duration::from_millis(number()?),
            "cut_after" => {
                plan.cut_after = Some(u32::try_from(number()?).map_err(|_| "too large")?)
            }
            "fail_rate" => {
                let rate = value
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("mock directive '{directive}' needs 0.0..=1.0"))?;
                plan.fail_rate = Some(rate);
            }
            "malformed" if value.is_none() => plan.malformed = true,
            "reset" if value.is_none() => plan.reset = true,
            "hang" if value.is_none() => plan.hang = true,
            "context_length" if value.is_none() => plan.context_length = true,
            _ => return Err(format!("unknown mock directive '{directive}'")),
        }
    }
    Ok((base, plan))
}

/// The control-API fault slot; each request takes one use of the fault.
#[derive(Debug, Default)]
pub struct Slot(Mutex<Option<Fault>>);

impl Slot {
    pub fn set(&self, fault: Option<Fault>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    pub fn get(&self) -> Option<Fault> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes one use of the current fault, clearing it when its count runs out.
    pub fn take_one(&self) -> Option<FaultMode> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fault = slot.as_mut()?;
        let mode = fault.mode.clone();
        match fault.count {
            Some(0) => {
                *slot = None;
                return None;
            }
            Some(1) => *slot = None,
            Some(n) => fault.count = Some(n - 1),
            None => {}
        }
        Some(mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_split_from_the_base_name() {
        let (base, plan) = parse_model("gpt-4o-mini+status=429+retry_after=2").unwrap();
        assert_eq!(base, "gpt-4o-mini");
        assert_eq!(plan.status, Some(429));
        assert_eq!(plan.retry_after, Some(2));
        let (_, plan) = parse_model("m+drip_ms=500+cut_after=3+malformed").unwrap();
        assert_eq!(plan.chunk_delay, Duration::from_millis(500));
        assert_eq!(plan.cut_after, Some(3));
        assert!(plan.malformed);
        assert!(parse_model("m+stauts=503").is_err());
        assert!(parse_model("m+status=200").is_err());
        assert_eq!(
            parse_model("plain").unwrap(),
            ("plain".into(), Plan::default())
        );
    }

    #[test]
    fn fail_rate_gates_the_status() {
        let (_, always) = parse_model("m+fail_rate=1").unwrap();
        assert_eq!(always.error_status(), Some(500));
        let (_, never) = parse_model("m+fail_rate=0+status=503").unwrap();
        assert_eq!(never.error_status(), None);
    }

    #[test]
    fn counted_faults_run_out() {
        let slot = Slot::default();
        slot.set(Some(Fault::status(503).times(2)));
        assert!(slot.take_one().is_some());
        assert!(slot.take_one().is_some());
        assert_eq!(slot.take_one(), None);
        assert_eq!(slot.get(), None);
    }

    #[test]
    fn control_bodies_parse() {
        let f = Fault::from_json(&json!({"status": 503, "count": 5, "retry_after": 1})).unwrap();
        assert_eq!(f, Fault::status(503).times(5).with_retry(1));
        let f = Fault::from_json(&json!({"mode": "cut_after", "n": 3})).unwrap();
        assert_eq!(f.mode, FaultMode::CutAfter(3));
        assert!(Fault::from_json(&json!({"mode": "explode"})).is_err());
        assert_eq!(Fault::from_json(&f.to_json()).unwrap(), f);
    }

    impl Fault {
        fn with_retry(mut self, secs: u64) -> Fault {
            if let FaultMode::Status { retry_after, .. } = &mut self.mode {
                *retry_after = Some(secs);
            }
            self
        }
    }
}
