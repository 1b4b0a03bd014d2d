//! Says loudly that the Redis suite did not run: built without the `redis`
//! feature, `tests/redis.rs` and the Redis cases of
//! `tests/store_conformance.rs` are not compiled. Under `CI=true` that is a
//! failure. `bash .ci/test` (`cargo test --all-features`) runs them.
#![cfg(not(feature = "redis"))]

mod common;

#[test]
fn the_redis_suite_needs_the_redis_feature() {
    common::missing_dependency(
        "tests/redis.rs and store_conformance::redis",
        "built without the `redis` feature (run `bash .ci/test`, or `cargo test --all-features`)",
    );
}
