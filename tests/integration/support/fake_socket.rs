//! A fake Socket Mode server: the WebSocket end of Slack's Socket Mode,
//! beside the fake Web API (whose `apps.connections.open` hands out its
//! URL). It greets every connection with `hello`, sends the frames a test
//! scripts on the connection it picks, records every frame the bot sends
//! back (the acks), and can close a connection or ask it to reconnect.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone)]
pub struct Received {
    /// Which connection (numbered from 0 in the order they were accepted).
    pub conn: usize,
    pub frame: Value,
    pub at: Instant,
}

struct Conn {
    to_bot: mpsc::UnboundedSender<Message>,
    open: bool,
}

#[derive(Default)]
struct Inner {
    conns: Vec<Conn>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct FakeSocket {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSocket {
    pub async fn start() -> FakeSocket {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake socket");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let accepting = inner.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, accepting.clone()));
            }
        });
        FakeSocket {
            url: format!("ws://{addr}/link/"),
            inner,
        }
    }

    /// Connections accepted so far, open or not.
    pub fn connects(&self) -> usize {
        self.inner.lock().unwrap().conns.len()
    }

    /// The connections that are open now.
    pub fn open(&self) -> Vec<usize> {
        let inner = self.inner.lock().unwrap();
        (0..inner.conns.len()).filter(|i| inner.conns[*i].open).collect()
    }

    /// Wait until `n` connections are open and at least `connects` were
    /// ever accepted; returns the open ones.
    pub async fn wait_open(&self, n: usize, connects: usize, secs: u64) -> Vec<usize> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let open = self.open();
            if open.len() == n && self.connects() >= connects {
                return open;
            }
            assert!(
                Instant::now() < deadline,
                "wanted {n} open of {connects} accepted; open {open:?} of {}",
                self.connects()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn send(&self, conn: usize, frame: &Value) {
        self.send_raw(conn, Message::text(frame.to_string()));
    }

    pub fn send_raw(&self, conn: usize, message: Message) {
        let inner = self.inner.lock().unwrap();
        inner.conns[conn].to_bot.send(message).expect("connection task gone");
    }

    /// Close a connection from the server's side.
    pub fn close(&self, conn: usize) {
        self.send_raw(conn, Message::Close(None));
    }

    /// Ask a connection to go away, as Slack does before it refreshes one.
    pub fn disconnect(&self, conn: usize, reason: &str) {
        self.send(
            conn,
            &json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}),
        );
    }

    /// Every frame the bot sent that names this envelope.
    pub fn acks(&self, envelope_id: &str) -> Vec<Received> {
        let inner = self.inner.lock().unwrap();
        inner
            .received
            .iter()
            .filter(|r| r.frame["envelope_id"] == envelope_id)
            .cloned()
            .collect()
    }

    /// Wait for `n` acks of an envelope, or panic after `secs`.
    pub async fn wait_acks(&self, envelope_id: &str, n: usize, secs: u64) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let acks = self.acks(envelope_id);
            if acks.len() >= n {
                return acks;
            }
            assert!(
                Instant::now() < deadline,
                "{} acks of {envelope_id} after {secs} s; received {:#?}",
                acks.len(),
                self.inner.lock().unwrap().received
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One connection: hello, then frames both ways until either side closes.
async fn serve(tcp: TcpStream, inner: Arc<Mutex<Inner>>) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (to_bot, mut outgoing) = mpsc::unbounded_channel();
    let conn = {
        let mut i = inner.lock().unwrap();
        i.conns.push(Conn { to_bot, open: true });
        i.conns.len() - 1
    };
    let hello = json!({"type": "hello", "num_connections": conn + 1, "connection_info": {"app_id": "A0APP"},
        "debug_info": {"host": "fake", "approximate_connection_time": 18060}});
    let _ = sink.send(Message::text(hello.to_string())).await;
    loop {
        tokio::select! {
            Some(message) = outgoing.recv() => {
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str(text.as_str()).unwrap_or_else(|_| Value::String(text.to_string()));
                    inner.lock().unwrap().received.push(Received { conn, frame, at: Instant::now() });
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    inner.lock().unwrap().conns[conn].open = false;
}
