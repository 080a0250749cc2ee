//! The gateway's YAML configuration parser, `switchyard::config::parse`: `${VAR}` interpolation,
//! YAML, the schema and every validation rule, and the error report (rendered with its lines).
#![no_main]

use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    (name.starts_with("SET") || name == "OPENAI_API_KEY").then(|| "sk-fuzz-0123456789".to_string())
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match switchyard::config::parse(text, "fuzz.yaml", &env) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
