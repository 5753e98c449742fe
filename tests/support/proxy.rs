//! The TCP proxy of the chaos driver (`clerk_audit_loadgen::proxy`), and how a test finds the service behind
//! a URL.

use std::net::SocketAddr;

pub use clerk_audit_loadgen::proxy::TcpProxy;

pub fn service_addr(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("service URL");
    let host = url.host_str().expect("host");
    let port = url.port_or_known_default().expect("port");
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).expect("resolve").next().expect("address")
}
