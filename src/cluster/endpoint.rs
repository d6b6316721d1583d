//! Where Redis is: one server (`redis://...`), or the master that Redis Sentinel names
//! (`redis+sentinel://host:26379,host:26380,host:26381/mymaster`).
//!
//! Owns: the parsed `--redis-url` and, with Sentinel, asking the sentinels for the master at each
//! connect. Must not: hold a connection; the relay connects with what this resolves, and after a
//! failover its connections to the old master fail, so its next connect asks again.

use redis::{Client, IntoConnectionInfo};

/// The scheme of a Sentinel-managed Redis.
const SENTINEL_SCHEME: &str = "redis+sentinel://";

#[derive(Debug, Clone)]
pub enum Endpoint {
    Direct(Client),
    Sentinel {
        /// Each sentinel, asked in turn.
        sentinels: Vec<Client>,
        /// The monitored master's name.
        master: String,
        /// `user:password@`, for the master (not the sentinels), when the URL had one.
        credentials: String,
        /// The database number, `/0` by default.
        db: i64,
    },
}

impl Endpoint {
    /// Parses `--redis-url`; `Err` says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return Client::open(url)
                .map(Self::Direct)
                .map_err(|err| format!("--redis-url: {err}"));
        };
        let bad = |why: &str| {
            format!("--redis-url {SENTINEL_SCHEME}[user:password@]host:port[,host:port...]/master[/db]: {why}")
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => (master, db.parse().map_err(|_| bad("the db is a number"))?),
            None => (path, 0),
        };
        if master.is_empty() {
            return Err(bad("no master name"));
        }
        let sentinels = hosts
            .split(',')
            .map(|host| {
                Client::open(format!("redis://{host}")).map_err(|err| bad(&err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(bad("no sentinel"));
        }
        Ok(Self::Sentinel { sentinels, master: master.to_owned(), credentials, db })
    }

    /// A client for the master now: the one server, or the address the first sentinel that
    /// answers gives for the master.
    pub async fn resolve(&self) -> redis::RedisResult<Client> {
        let (sentinels, master, credentials, db) = match self {
            Self::Direct(client) => return Ok(client.clone()),
            Self::Sentinel { sentinels, master, credentials, db } => {
                (sentinels, master, credentials, db)
            }
        };
        let mut last = None;
        for sentinel in sentinels {
            match ask(sentinel, master).await {
                Ok((host, port)) => {
                    let url = format!("redis://{credentials}{host}:{port}/{db}");
                    return Client::open(url.into_connection_info()?);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("at least one sentinel"))
    }
}

/// `SENTINEL get-master-addr-by-name`, from one sentinel.
async fn ask(sentinel: &Client, master: &str) -> redis::RedisResult<(String, u16)> {
    let mut conn = sentinel.get_multiplexed_async_connection().await?;
    let address: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut conn)
        .await?;
    address.ok_or_else(|| {
        let why = format!("the sentinel does not know the master {master:?}");
        redis::RedisError::from((redis::ErrorKind::MasterNameNotFoundBySentinel, "no master", why))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_its_sentinels_its_master_and_its_db() {
        let Endpoint::Sentinel { sentinels, master, credentials, db } =
            Endpoint::parse("redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/2")
                .unwrap()
        else {
            panic!("a sentinel endpoint")
        };
        assert_eq!(
            (sentinels.len(), master.as_str(), credentials.as_str(), db),
            (2, "mymaster", ":pw@", 2)
        );
        assert!(matches!(Endpoint::parse("redis://127.0.0.1:6379"), Ok(Endpoint::Direct(_))));
        for bad in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel://h:1/m/x",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
