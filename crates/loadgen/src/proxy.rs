//! A TCP proxy on loopback in front of a real service, able to fail the way networks fail: `outage` closes
//! every proxied connection and refuses new ones, `freeze` keeps connections open but forwards nothing (a
//! black hole: a hung server whose kernel still acknowledges bytes), `thaw` ends a freeze by closing the held
//! connections, as a restarted server would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TcpProxy {
    port: u16,
    target: SocketAddr,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl TcpProxy {
    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Arc<Self>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("bind the proxy")?;
        let proxy = Arc::new(TcpProxy {
            port: listener.local_addr()?.port(),
            target,
            running: Mutex::new(None),
            frozen: tokio::sync::watch::Sender::new(false),
        });
        proxy.serve(listener).await;
        Ok(proxy)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    async fn serve(&self, listener: TcpListener) {
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
                while connections.try_join_next().is_some() {}
                let Ok((mut inbound, _)) = accepted else { continue };
                let token = token.clone();
                let mut frozen = frozen.clone();
                connections.spawn(async move {
                    if *frozen.borrow() {
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
                });
            }
            drop(listener);
            // Aborting the connection tasks closes both sides of every connection.
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        });
        *self.running.lock().await = Some((stop, task));
    }

    /// Stops forwarding without closing anything.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Ends a freeze: the held connections are closed and new ones forwarded.
    pub async fn thaw(&self) -> anyhow::Result<()> {
        self.outage().await;
        self.frozen.send_replace(false);
        self.recover().await
    }

    /// Closes every connection and stops accepting.
    pub async fn outage(&self) {
        if let Some((stop, task)) = self.running.lock().await.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// Accepts again on the same port.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error).context(format!("the proxy cannot rebind port {}", self.port)),
            }
        };
        self.serve(listener).await;
        Ok(())
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> anyhow::Result<String> {
        let mut url = url::Url::parse(url).context("service URL")?;
        url.set_host(Some("127.0.0.1")).context("set host")?;
        url.set_port(Some(self.port)).map_err(|()| anyhow::anyhow!("cannot set a port on {url}"))?;
        Ok(url.to_string())
    }
}

async fn until_frozen(frozen: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *frozen.borrow_and_update() {
            return;
        }
        if frozen.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
