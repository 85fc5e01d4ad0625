//! The aggregate's state, in DataFusion's own multi-phase aggregation: the
//! SQL's aggregate split into its Partial step (run on each batch), a
//! PartialReduce step (the batch's partial states merged into the state of
//! the open windows, a row per window and group) and its Final step, under
//! whatever the SQL does above it (HAVING, the SELECT list), run on the rows
//! of the windows being emitted. Any aggregate DataFusion can split works
//! (count, sum, min, max, avg, approx_distinct): no aggregate is written here.

use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::window::WINDOW_COLUMN;
use crate::error::usage;
use crate::slot::Slot;
use crate::transform::projection::Reads;
use crate::transform::sql::one_line;

pub struct Aggregation {
    task: Arc<TaskContext>,
    /// Rows with their windows, for the Partial step.
    input: Arc<Slot>,
    partial: Arc<dyn ExecutionPlan>,
    /// The state and a batch's partial states, for the PartialReduce step.
    merging: Arc<Slot>,
    reduce: Arc<dyn ExecutionPlan>,
    /// The state of the windows being emitted, for the Final step and the SQL above it.
    closing: Arc<Slot>,
    output: Arc<dyn ExecutionPlan>,
    /// A row per open window and group: the aggregates' intermediate values.
    state: Option<RecordBatch>,
    /// The state's column holding each row's window.
    window: usize,
    reads: Reads,
}

impl Aggregation {
    /// Plan `sql` (its window call already a column: `window::take_window`)
    /// over `table` of `input` schema (raw users or clean rows, and `__window`).
    pub async fn plan(sql: &str, table: &str, input: SchemaRef) -> Result<Self> {
        let config = SessionConfig::new().with_target_partitions(1).with_batch_size(8192);
        let ctx = SessionContext::new_with_config(config);
        let slot = Slot::new(input.clone());
        ctx.register_table(table, Arc::new(slot.table()?)).with_context(|| format!("registering {table}"))?;
        let invalid =
            |e: datafusion::error::DataFusionError| usage::<Self>(format!("invalid SQL: {}", one_line(&e.to_string())));
        let df = match ctx.sql(sql).await {
            Ok(df) => df,
            Err(e) => return invalid(e),
        };
        let columns: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        let reads = Reads::of(df.logical_plan(), &columns);
        let plan = match df.create_physical_plan().await {
            Ok(p) => p,
            Err(e) => return invalid(e),
        };
        let Some((top, steps)) = split(&plan)? else {
            return usage("the aggregate's SQL must have one GROUP BY over the window (and no other aggregation)");
        };
        let window = steps.window;
        let partial: Arc<dyn ExecutionPlan> = Arc::new(steps.step(AggregateMode::Partial, steps.input.clone())?);
        let state_schema = partial.schema();
        let merging = Slot::new(state_schema.clone());
        let reduce: Arc<dyn ExecutionPlan> = Arc::new(steps.step(AggregateMode::PartialReduce, merging.exec()?)?);
        let closing = Slot::new(state_schema);
        let last: Arc<dyn ExecutionPlan> = Arc::new(steps.step(AggregateMode::Final, closing.exec()?)?);
        let output = plan
            .transform_up(|node| {
                Ok(if Arc::ptr_eq(&node, &top) { Transformed::yes(last.clone()) } else { Transformed::no(node) })
            })
            .context("planning the aggregate's final step")?
            .data;
        Ok(Self {
            task: ctx.task_ctx(),
            input: slot,
            partial,
            merging,
            reduce,
            closing,
            output,
            state: None,
            window,
            reads,
        })
    }

    /// What the SQL reads of its table.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// The columns the SQL makes.
    pub fn output_schema(&self) -> SchemaRef {
        self.output.schema()
    }

    /// Count a batch of rows with their windows into the state.
    pub async fn add(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let partials =
            run(&self.partial, &self.input, batch, &self.task).await.context("the aggregate's partial step")?;
        let mut all: Vec<RecordBatch> = self.state.take().into_iter().collect();
        all.extend(partials);
        let merged = concat_batches(&self.reduce.schema(), &all).context("gathering the states to merge")?;
        let reduced = run(&self.reduce, &self.merging, merged, &self.task).await.context("merging the state")?;
        self.state = Some(concat_batches(&self.reduce.schema(), &reduced).context("keeping the state")?);
        Ok(())
    }

    /// The final rows of every window that ends at or before `until` (ms;
    /// `None`: every window), which leave the state.
    pub async fn emit(&mut self, until: Option<i64>) -> Result<Vec<RecordBatch>> {
        let Some(state) = self.state.take() else { return Ok(Vec::new()) };
        let ends = window_ends(&state, self.window)?;
        let closed: BooleanArray =
            ends.iter().map(|end| Some(until.is_none_or(|u| end.is_some_and(|e| e <= u)))).collect();
        let open = arrow::compute::not(&closed).context("selecting the open windows")?;
        let keep = filter_record_batch(&state, &open).context("keeping the open windows")?;
        self.state = (keep.num_rows() > 0).then_some(keep);
        let leaving = filter_record_batch(&state, &closed).context("taking the closed windows")?;
        if leaving.num_rows() == 0 {
            return Ok(Vec::new());
        }
        run(&self.output, &self.closing, leaving, &self.task).await.context("the aggregate's final step")
    }

    /// The state's rows (a window and group each) and the memory they hold.
    pub fn state_size(&self) -> (usize, usize) {
        self.state.as_ref().map_or((0, 0), |s| (s.num_rows(), s.get_array_memory_size()))
    }
}

/// Run `plan` on `batch`, put in `slot`.
async fn run(
    plan: &Arc<dyn ExecutionPlan>,
    slot: &Slot,
    batch: RecordBatch,
    task: &Arc<TaskContext>,
) -> Result<Vec<RecordBatch>> {
    slot.put(batch)?;
    let plan = reset_plan_states(plan.clone()).context("preparing a plan")?;
    Ok(collect(plan, task.clone()).await?)
}

/// Each state row's window end, in ms.
fn window_ends(state: &RecordBatch, window: usize) -> Result<Vec<Option<i64>>> {
    let column = state.column(window).as_struct_opt().context("the window column is not a struct")?;
    let ends = column
        .column_by_name("end")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .context("the window column has no end")?;
    Ok((0..ends.len()).map(|i| ends.is_valid(i).then(|| ends.value(i))).collect())
}

/// The SQL's aggregate, taken apart: what its steps are made of.
struct Steps {
    group: Arc<datafusion::physical_plan::aggregates::PhysicalGroupBy>,
    aggregates: Vec<Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>>>,
    /// The plan of the rows it aggregates (reading the input slot), and their schema.
    input: Arc<dyn ExecutionPlan>,
    input_schema: SchemaRef,
    /// Which group column is the window.
    window: usize,
}

impl Steps {
    fn step(&self, mode: AggregateMode, input: Arc<dyn ExecutionPlan>) -> Result<AggregateExec> {
        let group = match mode {
            AggregateMode::Partial => self.group.as_ref().clone(),
            _ => self.group.as_final(),
        };
        AggregateExec::try_new(
            mode,
            group,
            self.aggregates.clone(),
            self.filters.clone(),
            input,
            self.input_schema.clone(),
        )
        .with_context(|| format!("planning the aggregate's {mode:?} step"))
    }
}

/// The plan's one aggregate that makes final values (the node to replace)
/// and its parts, if it groups by the window.
fn split(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<(Arc<dyn ExecutionPlan>, Steps)>> {
    let mut finals: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    plan.apply(|node| {
        if let Some(agg) = node.downcast_ref::<AggregateExec>()
            && !matches!(agg.mode(), AggregateMode::Partial | AggregateMode::PartialReduce)
        {
            finals.push(node.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let [top] = finals.as_slice() else { return Ok(None) };
    let agg = top.downcast_ref::<AggregateExec>().context("an aggregate")?;
    if matches!(agg.mode(), AggregateMode::Single | AggregateMode::SinglePartitioned) {
        return Ok(parts(agg).map(|steps| (top.clone(), steps)));
    }
    // Final over Partial (through a repartition or a coalesce): the Partial's parts.
    let mut below = agg.input().clone();
    while below.downcast_ref::<AggregateExec>().is_none() {
        let next = match below.children().as_slice() {
            [child] => Arc::clone(child),
            _ => return Ok(None),
        };
        below = next;
    }
    let partial = below.downcast_ref::<AggregateExec>().context("an aggregate")?;
    Ok(parts(partial).map(|steps| (top.clone(), steps)))
}

fn parts(agg: &AggregateExec) -> Option<Steps> {
    if agg.group_expr().has_grouping_set() {
        return None;
    }
    let window = agg
        .group_expr()
        .expr()
        .iter()
        .position(|(e, _)| e.downcast_ref::<Column>().is_some_and(|c| c.name() == WINDOW_COLUMN))?;
    Some(Steps {
        group: Arc::new(agg.group_expr().clone()),
        aggregates: agg.aggr_expr().to_vec(),
        filters: agg.filter_expr().to_vec(),
        input: agg.input().clone(),
        input_schema: agg.input_schema(),
        window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::window::{take_window, windowed_schema};
    use crate::raw::decode::{RawDecoder, raw_schema};
    use crate::transform::sql::INPUT_TABLE;
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;

    const SQL: &str = "SELECT WINDOW_CALL AS window, nat, count(*) AS signups, avg(dob['age']) AS mean_age, \
        min(dob['age']) AS youngest, sum(dob['age']) AS ages, approx_distinct(gender) AS genders \
        FROM users_raw GROUP BY window, nat HAVING count(*) > 1";

    /// `n` generated users with their windows, event time i * 1.3 s.
    async fn users(n: u64, windows: &crate::aggregate::window::Windows) -> RecordBatch {
        let records = crate::generate::Generator::new(7).records(n);
        let payloads: Vec<Option<&[u8]>> = records.iter().map(|r| Some(r.as_slice())).collect();
        let decoded = RawDecoder::default().decode(&payloads).unwrap();
        let times: Vec<Option<i64>> = (0..decoded.batch.num_rows() as i64).map(|i| Some(i * 1300)).collect();
        windows.assign(&decoded.batch, &times, &windowed_schema(&raw_schema())).unwrap()
    }

    fn sorted(batches: &[RecordBatch]) -> Vec<String> {
        let text = pretty_format_batches(batches).unwrap().to_string();
        let mut lines: Vec<String> =
            text.lines().filter(|l| l.starts_with("| ") && !l.contains("signups")).map(String::from).collect();
        lines.sort();
        lines
    }

    #[tokio::test]
    async fn windows_emitted_in_steps_equal_one_group_by_over_all_the_records() {
        for call in ["tumble(interval '1 minute')", "hop(interval '20 seconds', interval '1 minute')"] {
            let windowed = take_window(&SQL.replace("WINDOW_CALL", call)).await.unwrap();
            let all = users(600, &windowed.windows).await;
            let schema = windowed_schema(&raw_schema());
            let mut aggregation = Aggregation::plan(&windowed.sql, INPUT_TABLE, schema.clone()).await.unwrap();
            let mut emitted = Vec::new();
            // In batches of 50 rows, emitting the windows that end by 2 minutes midway (every record up
            // to 151 s is in by then: a watermark of its own), the rest at the end.
            for start in (0..all.num_rows()).step_by(50) {
                aggregation.add(all.slice(start, 50.min(all.num_rows() - start))).await.unwrap();
                if start == 300 {
                    emitted.extend(aggregation.emit(Some(120_000)).await.unwrap());
                    assert!(!emitted.is_empty(), "{call}: windows ending by 2 minutes were emitted");
                }
            }
            let (open, _) = aggregation.state_size();
            assert!(open > 0, "{call}: later windows stay open until emitted");
            emitted.extend(aggregation.emit(None).await.unwrap());
            assert_eq!(aggregation.state_size().0, 0, "{call}: emitting every window empties the state");
            // The oracle: the same SQL, planned as DataFusion plans it, over every record at once.
            let ctx = SessionContext::new();
            let table = MemTable::try_new(schema.clone(), vec![vec![all.clone()]]).unwrap();
            ctx.register_table(INPUT_TABLE, Arc::new(table)).unwrap();
            let oracle = ctx.sql(&windowed.sql).await.unwrap().collect().await.unwrap();
            assert_eq!(sorted(&emitted), sorted(&oracle), "{call}");
            assert!(sorted(&oracle).len() > 10, "{call}: enough windows and groups to mean something");
        }
    }

    #[tokio::test]
    async fn a_sql_that_does_not_group_by_its_window_is_refused() {
        let schema = windowed_schema(&raw_schema());
        for sql in ["SELECT __window AS window, nat FROM users_raw", "SELECT nat, count(*) FROM users_raw GROUP BY nat"]
        {
            let err = Aggregation::plan(sql, INPUT_TABLE, schema.clone()).await.err().expect(sql);
            assert_eq!(crate::error::exit_code(&err), 2, "{sql}");
            assert!(err.to_string().contains("GROUP BY over the window"), "{sql}: {err}");
        }
    }
}
