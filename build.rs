//! Compiles the gRPC API. madsim-tonic-build writes both the production code and the simulated one; the
//! `tonic::include_proto!` of the build in use picks the right one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/foreman/v1/common.proto",
        "proto/foreman/v1/discovery.proto",
        "proto/foreman/v1/jobs.proto",
        "proto/foreman/v1/executor.proto",
        "proto/foreman/v1/framework.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // Every proto map is a BTreeMap: map order can never reach behaviour (design.md §8).
    tonic_build::configure().btree_map(["."]).compile_protos(&protos, &["proto"])?;
    Ok(())
}
