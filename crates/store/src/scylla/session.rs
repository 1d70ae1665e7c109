//! The session: connecting, the runtime the driver runs on, prepared
//! statements, and the tables a plan needs.

use super::errors::{exec_err, poisoned, prepare_is_transient, scylla_err};
use super::{schema, Consistency, ScyllaConfig, ScyllaStore};
use crate::schema::table_name;
use crate::{Error, Result};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

impl ScyllaStore {
    /// Connects and creates the keyspace and bookkeeping tables.
    ///
    /// # Errors
    /// If the configuration is invalid, no node can be reached or the DDL fails.
    pub fn connect(config: ScyllaConfig) -> Result<Self> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scylla")
            .enable_all()
            .build()
            .map_err(scylla_err("cannot start the driver runtime", false))?;
        let session = block(&runtime, session_builder(&config).build())
            .map_err(scylla_err(format!("cannot connect to {}", config.nodes.join(",")), true))?;
        let mut store =
            ScyllaStore { runtime, session, config, prepared: Mutex::new(HashMap::new()), replication_alter: None };
        let existing = store.block(async {
            let ks = &store.config.keyspace;
            store.ddl(&schema::create_keyspace(ks, &store.config.replication)).await?;
            for ddl in schema::create_bookkeeping(ks) {
                store.ddl(&ddl).await?;
            }
            let checkpoint_columns = store.existing_columns("stream_checkpoints").await?;
            for (name, ty) in schema::CHECKPOINT_ADDED_COLUMNS {
                if !checkpoint_columns.contains_key(name) {
                    store.ddl(&schema::add_checkpoint_column(ks, name, ty)).await?;
                }
            }
            // Only feeds a warning: a cluster that will not say must not stop the start.
            Ok(store.keyspace_replication().await.ok().flatten())
        })?;
        if existing.is_some_and(|e| !store.config.replication.matches(&e)) {
            store.replication_alter = Some(schema::alter_keyspace(&store.config.keyspace, &store.config.replication));
        }
        Ok(store)
    }

    /// When the keyspace existed with another replication than configured
    /// (`CREATE KEYSPACE IF NOT EXISTS` leaves it as it is), the `ALTER
    /// KEYSPACE` statement an operator would run to apply the configuration.
    pub fn replication_alter(&self) -> Option<&str> {
        self.replication_alter.as_deref()
    }

    /// The keyspace's replication as the server reports it.
    async fn keyspace_replication(&self) -> Result<Option<HashMap<String, String>>> {
        let context = "cannot read the keyspace's replication";
        let result = self
            .session
            .query_unpaged(schema::select_keyspace_replication(), (&self.config.keyspace,))
            .await
            .map_err(exec_err(context))?;
        let rows = result.into_rows_result().map_err(scylla_err(context, false))?;
        let row = rows.maybe_first_row::<(HashMap<String, String>,)>().map_err(scylla_err(context, false))?;
        Ok(row.map(|(replication,)| replication))
    }

    /// The configuration connected with.
    pub fn config(&self) -> &ScyllaConfig {
        &self.config
    }

    pub(super) fn block<F: Future + Send>(&self, future: F) -> F::Output
    where
        F::Output: Send,
    {
        block(&self.runtime, future)
    }

    async fn ddl(&self, cql: &str) -> Result<()> {
        self.session.query_unpaged(cql, &[]).await.map_err(exec_err(format!("cannot run `{cql}`")))?;
        Ok(())
    }

    /// A statement that writes, at the write consistency.
    pub(super) async fn prepare(&self, cql: &str) -> Result<PreparedStatement> {
        self.prepare_at(cql, self.config.write_consistency).await
    }

    /// A statement that reads, at the read consistency.
    pub(super) async fn prepare_read(&self, cql: &str) -> Result<PreparedStatement> {
        self.prepare_at(cql, self.config.read_consistency).await
    }

    async fn prepare_at(&self, cql: &str, consistency: Consistency) -> Result<PreparedStatement> {
        if let Some(p) = self.prepared.lock().map_err(|_| poisoned())?.get(cql) {
            return Ok(p.clone());
        }
        let mut p = self.session.prepare(cql).await.map_err(|source| Error::Scylla {
            context: format!("cannot prepare `{cql}`"),
            retryable: prepare_is_transient(&source),
            source: Box::new(source),
        })?;
        p.set_is_idempotent(true);
        p.set_consistency(consistency);
        self.prepared.lock().map_err(|_| poisoned())?.insert(cql.to_string(), p.clone());
        Ok(p)
    }

    async fn existing_columns(&self, table: &str) -> Result<HashMap<String, (String, String)>> {
        let result = self
            .session
            .query_unpaged(schema::describe_columns(), (&self.config.keyspace, table))
            .await
            .map_err(exec_err(format!("cannot describe `{table}`")))?;
        let rows = result.into_rows_result().map_err(scylla_err(format!("cannot describe `{table}`"), false))?;
        let mut out = HashMap::new();
        for r in rows.rows::<(String, String, String)>().map_err(scylla_err("bad system_schema row", false))? {
            let (name, kind, ty) = r.map_err(scylla_err("bad system_schema row", false))?;
            out.insert(name, (kind, ty));
        }
        Ok(out)
    }

    pub(super) async fn setup_async(&self, plan: &dsl::Plan) -> Result<()> {
        let ks = &self.config.keyspace;
        for metric in &plan.metrics {
            for tier in 0..metric.tiers.len() {
                let table = table_name(metric, tier);
                self.ddl(&schema::create_table(ks, metric, tier)).await?;
                self.ddl(&schema::create_series_index(ks, metric, tier)).await?;
                let existing = self.existing_columns(&table).await?;
                let incompatible = |detail: String| Error::IncompatibleSchema { table: table.clone(), detail };
                for (name, ty) in schema::PRIMARY_KEY {
                    match existing.get(name) {
                        Some((_, t)) if t == ty => {}
                        _ => return Err(incompatible(format!("its primary key differs at `{name}` (want {ty})"))),
                    }
                }
                for key in &metric.keys {
                    if !existing.contains_key(&key.name) {
                        return Err(incompatible(format!(
                            "it has no key column `{}`; give the changed metric a new `into table` name",
                            key.name
                        )));
                    }
                }
                for c in schema::data_columns(metric) {
                    match existing.get(&c.name) {
                        None => self.ddl(&schema::add_column(ks, &table, &c)).await?,
                        Some((_, t)) if t == schema::cql_type(c.kind) => {}
                        Some((_, t)) => {
                            return Err(incompatible(format!(
                                "column `{}` is {t}, the plan needs {}",
                                c.name,
                                schema::cql_type(c.kind)
                            )))
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

pub(super) fn block<F: Future + Send>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(|| runtime.block_on(future)).join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        runtime.block_on(future)
    }
}

/// The driver session's settings. Write timestamps come from this client
/// and only ever grow (the driver's monotonic generator), so a row written
/// by a later flush replaces the earlier version whatever the clocks of
/// the coordinators that receive the two writes (by default each
/// coordinator stamps a write with its own clock).
pub fn session_builder(config: &ScyllaConfig) -> SessionBuilder {
    let mut profile = ExecutionProfile::builder()
        // Prepared statements and batches set their own; this covers the DDL.
        .consistency(config.write_consistency)
        .request_timeout(Some(config.request_timeout));
    if let Some(dc) = &config.local_datacenter {
        // Without failover: LOCAL_* consistency is met in the local data
        // centre or not at all, and remote coordinators only add latency.
        profile = profile.load_balancing_policy(
            DefaultPolicy::builder().prefer_datacenter(dc.clone()).token_aware(true).permit_dc_failover(false).build(),
        );
    }
    let profile = profile.build().into_handle();
    SessionBuilder::new()
        .known_nodes(&config.nodes)
        .default_execution_profile_handle(profile)
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_timestamps_are_the_clients_own_and_only_grow() {
        let builder = session_builder(&ScyllaConfig::parse("scylla"));
        let generator = builder.config.timestamp_generator.expect("a client-side timestamp generator");
        let stamps: Vec<i64> = (0..1000).map(|_| generator.next_timestamp()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "timestamps must strictly grow");
    }
}
