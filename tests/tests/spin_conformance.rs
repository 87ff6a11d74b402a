//! Spin's own conformance suite (fermyon/conformance-tests), for the
//! interfaces ping-host provides, as our own manifests and the misbehave
//! component's `/conformance/*` routes: `variables`, `outbound-redis`,
//! `outbound-redis-no-permission`, `outbound-redis-variable-permission`,
//! `outbound-wasi-http-v0.2.0` and its `-no-perms` twin, with the answers
//! that suite expects. `request-shape` is in conformance.rs and fidelity.rs.
//! Also the component key `environment` (WASI environment variables), which
//! the suite's manifests use.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use ping_e2e::{Host, HostConfig, Redis, Reply, client, request, write_manifest};

/// Serves a manifest whose only component is the misbehave component on
/// every path, with `component` appended to its `[component.test]` table.
fn serve(variables: &str, component: &str) -> Result<(tempfile::TempDir, Host)> {
    let dir = tempfile::tempdir()?;
    let manifest: PathBuf = write_manifest(
        dir.path(),
        &format!(
            "spin_manifest_version = 2\n\
             [application]\nname = \"conformance\"\n\
             [variables]\n{variables}\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"test\"\n\
             [component.test]\nsource = \"@MISBEHAVE_WASM@\"\n{component}\n"
        ),
    )?;
    let host = Host::start(&HostConfig::default().manifest(manifest))?;
    Ok((dir, host))
}

fn call(host: &Host, path: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    request(&client(), "GET", &host.url(path), headers)
}

/// The suite's success: 200, an empty body, `content-length: 0`.
fn ensure_empty_200(reply: &Reply, what: &str) -> Result<()> {
    ensure!(reply.status == 200, "{what}: {reply:?}");
    ensure!(reply.body.is_empty(), "{what}: {reply:?}");
    let length = reply.headers.get("content-length").map(|v| v.as_bytes());
    ensure!(length == Some(b"0"), "{what}: {reply:?}");
    Ok(())
}

#[test]
fn environment_is_the_guests_wasi_environment() -> Result<()> {
    let (_dir, host) = serve(
        "",
        "environment = { GREETING = \"hello {{ not_a_template }}\", EMPTY = \"\" }",
    )?;
    let greeting = call(&host, "/env?GREETING", &[])?;
    ensure!(greeting.status == 200, "{greeting:?}");
    ensure!(
        greeting.body == "hello {{ not_a_template }}",
        "as written, no template expansion (as in Spin): {greeting:?}"
    );
    let empty = call(&host, "/env?EMPTY", &[])?;
    ensure!(empty.status == 200 && empty.body.is_empty(), "{empty:?}");
    // Nothing of the host's own environment reaches the guest.
    let path = call(&host, "/env?PATH", &[])?;
    ensure!(path.status == 404, "{path:?}");
    Ok(())
}

#[test]
fn variables() -> Result<()> {
    let (_dir, host) = serve("", "[component.test.variables]\nvariable = \"value\"")?;
    ensure_empty_200(&call(&host, "/conformance/variables", &[])?, "variables")
}

fn redis_address(redis: &Redis) -> String {
    format!("redis://localhost:{}", redis.port)
}

#[test]
fn outbound_redis() -> Result<()> {
    let redis = Redis::start()?;
    let address = redis_address(&redis);
    let (_dir, host) = serve("", &format!("allowed_outbound_hosts = [\"{address}\"]"))?;
    let reply = call(
        &host,
        "/conformance/outbound-redis",
        &[("redis_address", &address)],
    )?;
    ensure_empty_200(&reply, "outbound-redis")?;
    ensure!(redis.cmd::<String>(&["GET", "conformance"])? == "Eureka! I've got it!");
    Ok(())
}

#[test]
fn outbound_redis_no_permission() -> Result<()> {
    let redis = Redis::start()?;
    let (_dir, host) = serve("", "")?;
    let reply = call(
        &host,
        "/conformance/outbound-redis",
        &[("redis_address", &redis_address(&redis))],
    )?;
    ensure!(reply.status == 500, "{reply:?}");
    ensure!(reply.body == "Error::InvalidAddress", "{reply:?}");
    ensure!(
        redis
            .cmd::<Option<String>>(&["GET", "conformance-get-set"])?
            .is_none(),
        "nothing reached Redis"
    );
    Ok(())
}

#[test]
fn outbound_redis_variable_permission() -> Result<()> {
    let redis = Redis::start()?;
    let (_dir, host) = serve(
        &format!(
            "redis_host = {{ default = \"localhost\" }}\nredis_port = {{ default = \"{}\" }}",
            redis.port
        ),
        "allowed_outbound_hosts = [\"redis://{{ redis_host }}:{{ redis_port }}\"]",
    )?;
    let reply = call(
        &host,
        "/conformance/outbound-redis",
        &[("redis_address", &redis_address(&redis))],
    )?;
    ensure_empty_200(&reply, "outbound-redis-variable-permission")
}

/// A plain HTTP server that answers each request with its body (like the
/// suite's http-echo service); its port.
fn echo_server() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = echo(stream);
        }
    });
    Ok(port)
}

fn echo(stream: std::net::TcpStream) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().context("content-length")?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    Ok(())
}

#[test]
fn outbound_wasi_http_v0_2_0() -> Result<()> {
    let port = echo_server()?;
    let url = format!("http://localhost:{port}");
    let (_dir, host) = serve("", &format!("allowed_outbound_hosts = [\"{url}\"]"))?;
    let reply = call(&host, "/conformance/outbound-http", &[("url", &url)])?;
    ensure!(reply.status == 200, "{reply:?}");
    ensure!(reply.body == "Hello, world!", "{reply:?}");
    Ok(())
}

#[test]
fn outbound_wasi_http_v0_2_0_no_perms() -> Result<()> {
    let port = echo_server()?;
    let url = format!("http://localhost:{port}");
    let (_dir, host) = serve("", "")?;
    let reply = call(&host, "/conformance/outbound-http", &[("url", &url)])?;
    ensure!(reply.status == 500, "{reply:?}");
    ensure!(reply.body == "ErrorCode::HttpRequestDenied", "{reply:?}");
    Ok(())
}
