//! Spin variable precedence: --variable > SPIN_VARIABLE_<NAME> > manifest default.

use ping_e2e::{Host, HostConfig, Redis, get, write_fixture};

fn ping_once(config: &HostConfig) -> anyhow::Result<()> {
    let host = Host::start(config)?;
    let r = get(&host.url("/ping"))?;
    anyhow::ensure!(r.status == 200, "status {} body {}", r.status, r.body);
    Ok(())
}

#[test]
fn flag_beats_environment_beats_default() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let base = HostConfig::for_redis(&redis);

    ping_once(&base)?;
    assert_eq!(redis.counter("ping")?, 1, "default key");

    ping_once(&base.clone().env("SPIN_VARIABLE_COUNTER_KEY", "from_env"))?;
    assert_eq!(
        (redis.counter("from_env")?, redis.counter("ping")?),
        (1, 1),
        "environment beats the default"
    );

    let both = base
        .clone()
        .env("SPIN_VARIABLE_COUNTER_KEY", "from_env")
        .arg("--variable")
        .arg("counter_key=from_flag");
    ping_once(&both)?;
    assert_eq!(
        (redis.counter("from_flag")?, redis.counter("from_env")?),
        (1, 1),
        "the flag beats the environment"
    );
    Ok(())
}

#[test]
fn spin_variable_env_points_the_app_at_another_redis() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    ping_once(&HostConfig::default().env("SPIN_VARIABLE_REDIS_PORT", redis.port.to_string()))?;
    assert_eq!(redis.counter("ping")?, 1);
    Ok(())
}

#[test]
fn a_missing_required_variable_stops_start_up_naming_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = write_fixture(dir.path(), "required-secret")?;
    let (status, stderr) = HostConfig::default().manifest(manifest).run_to_exit()?;
    assert!(!status.success());
    assert!(
        stderr.contains("variable `redis_password` is required"),
        "{stderr}"
    );
    assert!(stderr.contains("SPIN_VARIABLE_REDIS_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}
