//! The SQL step: planned once at start-up against the raw schema, then run on
//! every batch. The table `users_raw` reads a batch slot (`crate::slot`), so
//! the same physical plan serves every batch: no parsing or planning per batch.

use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::projection::Reads;
use crate::error::usage;
use crate::slot::Slot;

/// The built-in transform (sql/format_users.sql).
pub const DEFAULT_SQL: &str = include_str!("../../sql/format_users.sql");

/// The name the SQL reads from.
pub const INPUT_TABLE: &str = "users_raw";

pub struct Query {
    /// Made once: making one per run copies the session's function registries.
    task: Arc<TaskContext>,
    plan: Arc<dyn ExecutionPlan>,
    slot: Arc<Slot>,
    /// The plan as expressions, when it is one projection over the table.
    projection: Option<Projection>,
    /// What the SQL reads of `users_raw`.
    reads: Reads,
}

impl Query {
    /// Plan `sql` over a table `users_raw` of `input` schema. Invalid SQL, or an
    /// output without a text `id` column, is a usage error (exit 2).
    pub async fn plan(sql: &str, input: SchemaRef) -> Result<Self> {
        Self::plan_over(sql, INPUT_TABLE, input).await
    }

    /// Plan `sql` over a table `table` of `input` schema, as `plan`.
    pub async fn plan_over(sql: &str, table: &str, input: SchemaRef) -> Result<Self> {
        // One partition and no repartitioning: batches are small and already
        // parallel across stage replicas; output order follows input order.
        let config = SessionConfig::new().with_target_partitions(1).with_batch_size(8192);
        let ctx = SessionContext::new_with_config(config);
        let slot = Slot::new(input.clone());
        ctx.register_table(table, Arc::new(slot.table()?)).with_context(|| format!("registering {table}"))?;
        let df = match ctx.sql(sql).await {
            Ok(df) => df,
            Err(e) => return usage(format!("invalid SQL: {}", one_line(&e.to_string()))),
        };
        let columns: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        let reads = Reads::of(df.logical_plan(), &columns);
        let plan = match df.create_physical_plan().await {
            Ok(p) => p,
            Err(e) => return usage(format!("invalid SQL: {}", one_line(&e.to_string()))),
        };
        match plan.schema().field_with_name("id") {
            Ok(f) if matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {}
            Ok(f) => return usage(format!("the SQL's `id` column must be text, not {}", f.data_type())),
            Err(_) => return usage("the SQL must produce an `id` column (the row's key, e.g. login['uuid'] AS id)"),
        }
        let projection = Projection::of(&plan);
        Ok(Self { task: ctx.task_ctx(), plan, slot, projection, reads })
    }

    /// What the SQL reads of `users_raw`: the decoder fills only that.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// The columns the SQL makes (`--output-format avro` derives its schema from them).
    pub fn output_schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    /// Run the plan over one batch. `&mut`: the plan reads its input from the
    /// one slot, so two runs at once would take each other's batch.
    pub async fn run(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        if let Some(projection) = &self.projection {
            return Ok(vec![projection.run(&batch).context("running the transform SQL")?]);
        }
        self.slot.put(batch)?;
        let plan = reset_plan_states(self.plan.clone()).context("preparing the SQL plan")?;
        collect(plan, self.task.clone()).await.context("running the transform SQL")
    }
}

/// A plan that is one projection straight over the table (the built-in SQL
/// is), as its expressions: evaluated on the batch itself, it skips what an
/// execution sets up each time (streams, metrics, a name for every
/// expression), most of the SQL's cost on a batch of a few dozen records
/// (bench/README.md, "One batch a window").
struct Projection {
    /// The table's columns the expressions are over (the scan's projection).
    columns: Option<Arc<[usize]>>,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Projection {
    fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let projection = plan.downcast_ref::<ProjectionExec>()?;
        let scan = projection.input().downcast_ref::<StreamingTableExec>()?;
        if scan.limit().is_some() {
            return None;
        }
        Some(Self {
            columns: scan.projection().clone(),
            exprs: projection.expr().iter().map(|e| e.expr.clone()).collect(),
            schema: plan.schema(),
        })
    }

    fn run(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let input = match &self.columns {
            Some(columns) => batch.project(columns)?,
            None => batch.clone(),
        };
        let rows = input.num_rows();
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&input)?.into_array(rows))
            .collect::<datafusion::error::Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?)
    }
}

/// A DataFusion message on one line (the aggregate's plan says it so too).
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::decode::RawDecoder;

    async fn plan(sql: &str) -> Result<Query> {
        Query::plan(sql, RawDecoder::default().schema()).await
    }

    #[tokio::test]
    async fn default_sql_has_the_contract_columns() {
        let q = plan(DEFAULT_SQL).await.unwrap();
        let names: Vec<String> = q.output_schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, crate::row::names().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn bad_sql_is_a_usage_error_with_datafusion_message() {
        for (sql, says) in [
            ("SELEC id FROM users_raw", "invalid SQL"),
            ("SELECT nope FROM users_raw", "nope"),
            ("SELECT gender FROM users_raw", "`id` column"),
        ] {
            let err = plan(sql).await.err().expect("should fail");
            assert_eq!(crate::error::exit_code(&err), 2);
            assert!(err.to_string().contains(says), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn a_projection_runs_as_its_expressions_with_what_the_plan_gives() {
        let dec = RawDecoder::default();
        let generator = crate::generate::Generator::new(7);
        let records: Vec<Vec<u8>> = (0..50)
            .map(|i| {
                let mut buf = Vec::new();
                generator.write_record(i, &mut buf);
                buf
            })
            .collect();
        let payloads: Vec<Option<&[u8]>> = records.iter().map(|r| Some(r.as_slice())).collect();
        for (sql, direct) in
            [(DEFAULT_SQL, true), ("SELECT login['uuid'] AS id FROM users_raw WHERE gender = 'female'", false)]
        {
            let mut q = plan(sql).await.unwrap();
            assert_eq!(q.projection.is_some(), direct, "{sql}");
            let d = dec.decode(&payloads).unwrap();
            let fast = q.run(d.batch.clone()).await.unwrap();
            q.projection = None;
            let planned = q.run(d.batch).await.unwrap();
            let show = |b: &[RecordBatch]| arrow::util::pretty::pretty_format_batches(b).unwrap().to_string();
            assert_eq!(show(&fast), show(&planned), "{sql}");
            assert!(fast.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
        }
    }

    #[tokio::test]
    async fn the_plan_is_reused_across_batches() {
        let mut q = plan(DEFAULT_SQL).await.unwrap();
        let dec = RawDecoder::default();
        for uuid in ["7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6", "0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40"] {
            let rec = format!(
                r#"{{"login":{{"uuid":"{uuid}"}},"location":{{"street":{{"number":1,"name":"A"}},"city":"B","state":"C","country":"D"}}}}"#
            );
            let d = dec.decode(&[Some(rec.as_bytes())]).unwrap();
            let out = q.run(d.batch).await.unwrap();
            assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
            let ids = arrow::util::pretty::pretty_format_batches(&out).unwrap().to_string();
            assert!(ids.contains(uuid) && ids.contains("1 A, B, C, D"), "{ids}");
        }
    }
}
