#![no_main]
//! Any request body: the handler must answer (never panic) with a valid AdmissionReview.

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = common::ADMITTER.review(data);
    common::check_answer(&verdict);
});
