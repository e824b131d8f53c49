//! Generates the messages and stubs of the examples' services into OUT_DIR (lib.rs includes them).
fn main() -> Result<(), grpcore_compiler::Error> {
    grpcore_compiler::configure().compile(
        &[
            "helloworld/helloworld.proto",
            "route_guide/route_guide.proto",
            "metrics/echo.proto",
        ],
        &["helloworld", "route_guide", "metrics"],
    )
}
