#![no_main]
//! Any request body: the handler must answer (never panic), allowing every readable uid.

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = common::ADMITTER.review(common::webhook_of(data), data);
    common::check_answer(&verdict, data);
});
