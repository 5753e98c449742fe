//! A TCP proxy on loopback in front of a real service, to cut, refuse or freeze its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A TCP proxy on loopback in front of a real service. `outage` closes every proxied connection and stops
/// accepting (new connections are refused); `recover` accepts again on the same port.
pub struct TcpProxy {
    port: u16,
    target: SocketAddr,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    /// While true, connections stay open but nothing is forwarded (a hung server whose kernel still
    /// acknowledges bytes).
    frozen: tokio::sync::watch::Sender<bool>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Arc::new(TcpProxy {
            port: listener.local_addr().unwrap().port(),
            target,
            running: Mutex::new(None),
            frozen: tokio::sync::watch::Sender::new(false),
        });
        proxy.serve(listener).await;
        proxy
    }

    pub async fn serve(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let target = self.target;
        let token = stop.clone();
        let frozen = self.frozen.subscribe();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else { continue };
                let token = token.clone();
                let mut frozen = frozen.clone();
                connections.spawn(async move {
                    let held = *frozen.borrow();
                    if held {
                        // Hold the connection, answer nothing.
                        token.cancelled().await;
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    // Without TCP_NODELAY the proxy's own sockets hold a small write until the previous one
                    // is acknowledged, and the peer delays that ack by up to 40 ms: pipelined PostgreSQL
                    // statements, several small writes, would stall on every round trip.
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = until_frozen(&mut frozen) => token.cancelled().await,
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                    drop((inbound, outbound));
                });
            }
            drop(listener);
            // Dropping the set aborts every connection task, closing both sides.
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        });
        *self.running.lock().await = Some((stop, task));
    }

    /// Stops forwarding without closing anything.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Ends a freeze: the held connections are closed (as a restarted server would) and new ones forwarded.
    pub async fn thaw(&self) {
        self.outage().await;
        self.frozen.send_replace(false);
        self.recover().await;
    }

    pub async fn outage(&self) {
        if let Some((stop, task)) = self.running.lock().await.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    pub async fn recover(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) if tries < 50 => {
                    tries += 1;
                    eprintln!("proxy rebind on {}: {error}; retrying", self.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("proxy cannot rebind port {}: {error}", self.port),
            }
        };
        self.serve(listener).await;
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("service URL");
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

pub async fn until_frozen(frozen: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = *frozen.borrow_and_update();
        if now {
            return;
        }
        if frozen.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

pub fn service_addr(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("service URL");
    let host = url.host_str().expect("host");
    let port = url.port_or_known_default().expect("port");
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).expect("resolve").next().expect("address")
}
