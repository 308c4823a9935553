//! `s3://` paths through a real S3-protocol server on loopback (moto, from
//! PyPI; `scripts/test.sh` installs it): a job writes Parquet to a bucket and
//! a second job reads it back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto S3 server, stopped when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http(port: u16, request: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    Ok(response)
}

fn start_s3(bucket: &str) -> S3Server {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server must be installed for this test: pip install 'moto[server]' (scripts/test.sh does)");
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let create = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    loop {
        if let Ok(response) = http(port, &create)
            && response.starts_with("HTTP/1.1 200")
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sluice(server: &S3Server) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", &server.endpoint)
        .env("AWS_ALLOW_HTTP", "true");
    command
}

#[test]
fn jobs_write_and_read_parquet_on_s3() {
    let server = start_s3("sluice-test");
    let dir = tempfile::tempdir().expect("tempdir");
    sluice::generate::game::generate(
        dir.path(),
        5_000,
        1,
        2,
        sluice::generate::FileFormat::Parquet,
    )
    .expect("generate");
    let write = dir.path().join("write.sql");
    std::fs::write(
        &write,
        format!(
            "CREATE TABLE events (app_id STRING, player_id BIGINT, ts TIMESTAMP(3)) \
               WITH ('connector' = 'filesystem', 'path' = '{}/events', 'format' = 'parquet');\n\
             CREATE TABLE copy (app_id STRING, player_id BIGINT, ts TIMESTAMP(3)) \
               WITH ('connector' = 'filesystem', 'path' = 's3://sluice-test/copy', 'format' = 'parquet');\n\
             INSERT INTO copy SELECT * FROM events;",
            dir.path().display()
        ),
    )
    .expect("job");
    let run = sluice(&server)
        .arg("run")
        .arg(&write)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("5000 rows in, 5000 rows out"), "{stderr}");

    let read = dir.path().join("read.sql");
    std::fs::write(
        &read,
        format!(
            "CREATE TABLE copy (app_id STRING, player_id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
               WITH ('connector' = 'filesystem', 'path' = 's3://sluice-test/copy', 'format' = 'parquet');\n\
             CREATE TABLE counts (app_id STRING, n BIGINT) \
               WITH ('connector' = 'filesystem', 'path' = '{}/counts', 'format' = 'json');\n\
             INSERT INTO counts SELECT app_id, COUNT(*) FROM copy GROUP BY app_id;",
            dir.path().display()
        ),
    )
    .expect("job");
    let run = sluice(&server).arg("run").arg(&read).output().expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("5000 rows in"),
        "every row written to S3 is read back: {stderr}"
    );
    let mut total = 0;
    for entry in std::fs::read_dir(dir.path().join("counts")).expect("counts") {
        let entry = entry.expect("entry");
        // Readers skip hidden names: `_SUCCESS`, staged parts.
        if entry.file_name().to_string_lossy().starts_with(['_', '.']) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read");
        for line in text.lines() {
            let n: u64 = line
                .rsplit("\"n\":")
                .next()
                .and_then(|n| n.trim_end_matches('}').parse().ok())
                .expect("a count");
            total += n;
        }
    }
    assert_eq!(total, 5_000);

    // A bucket that does not exist is an error that names the path.
    let missing = dir.path().join("missing.sql");
    std::fs::write(
        &missing,
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = 's3://no-such-bucket/x', 'format' = 'parquet');\n\
         CREATE TABLE o (a BIGINT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO o SELECT a FROM t;",
    )
    .expect("job");
    let run = sluice(&server)
        .arg("run")
        .arg(&missing)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("s3://no-such-bucket/x"), "{stderr}");
}
