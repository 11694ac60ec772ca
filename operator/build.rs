//! Compiles the broker's admin service (`broker/proto`) into a gRPC client with protox
//! (pure Rust; no protoc needed). The operator asks brokers through it whether a
//! restart is safe and whether they have caught up.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../broker/proto");
    let descriptors = protox::compile(["runnel/admin/v1/admin.proto"], ["../broker/proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
