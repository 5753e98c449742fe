//! A KMS in front of moto that throttles the first Decrypt calls, as KMS does under a request burst.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A KMS stand-in in front of moto: the first `throttle` Decrypt calls get a ThrottlingException.
pub async fn throttling_kms(moto: String, throttle: u32) -> (String, Arc<AtomicU32>, JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    let decrypts = Arc::new(AtomicU32::new(0));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let seen = decrypts.clone();
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let client = client.clone();
        let moto = moto.clone();
        let seen = seen.clone();
        async move {
            let is_decrypt = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) == Some("TrentService.Decrypt");
            if is_decrypt && seen.fetch_add(1, Ordering::SeqCst) < throttle {
                return (
                    StatusCode::BAD_REQUEST,
                    [("x-amzn-ErrorType", "ThrottlingException"), ("content-type", "application/x-amz-json-1.1")],
                    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
                )
                    .into_response();
            }
            let url =
                format!("{}{}", moto.trim_end_matches('/'), uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
            let mut request =
                client.request(reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), url).body(body);
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name.as_str(), value.as_bytes());
                }
            }
            match request.send().await {
                Ok(answer) => {
                    let mut response = Response::builder().status(answer.status().as_u16());
                    for (name, value) in answer.headers() {
                        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                            response = response.header(name.as_str(), value.as_bytes());
                        }
                    }
                    response.body(axum::body::Body::from(answer.bytes().await.unwrap_or_default())).unwrap()
                }
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, decrypts, task)
}
