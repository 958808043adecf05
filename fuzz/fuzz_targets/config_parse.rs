//! Configuration documents arrive over the REST API (JSON) and from files (TOML): any bytes must
//! parse or be refused without panicking, validation must never panic, and a spec that validates
//! must survive the JSON round trip the Raft log and the API put it through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::ConfigSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = model::parse::from_any::<ConfigSpec>(data) else {
        return;
    };
    if model::validate(&spec).is_err() {
        return;
    }
    let json = serde_json::to_vec(&spec).expect("a parsed spec serializes to JSON");
    let again: ConfigSpec = match model::parse::from_json(&json) {
        Ok(spec) => spec,
        Err(err) => panic!(
            "re-parsing serialized spec failed: {err}\njson: {}",
            String::from_utf8_lossy(&json)
        ),
    };
    assert_eq!(spec, again, "JSON round trip changed the spec");
});
