//! Bench only: a wasi-http hello component.
//!
//! Every request gets `200 Hello!`, with no Spin imports, so that ping-host
//! (through `bench/hello/spin.toml`) and `wasmtime serve` run the very same
//! component and `make bench` compares the runtimes, not the guests.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Hello);

/// The exported `wasi:http/incoming-handler`.
struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .expect("a valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("the stream is taken once");
        out.write_all(b"Hello!").expect("the body is written");
        out.flush().expect("the body is flushed");
        drop(out);
        OutgoingBody::finish(body, None).expect("the body is finished");
    }
}
