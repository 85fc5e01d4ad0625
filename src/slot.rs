//! A table whose one partition yields whatever batch was put in its slot: a
//! physical plan made once over it runs again on every batch, with no
//! parsing or planning per batch (the transform's SQL, the aggregate's steps).

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};

/// The batch the next execution reads.
#[derive(Debug)]
pub struct Slot {
    schema: SchemaRef,
    batch: Mutex<Option<RecordBatch>>,
}

impl PartitionStream for Slot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batch = self.batch.lock().ok().and_then(|mut b| b.take());
        let stream = futures::stream::iter(batch.into_iter().map(Ok));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

impl Slot {
    pub fn new(schema: SchemaRef) -> Arc<Self> {
        Arc::new(Self { schema, batch: Mutex::new(None) })
    }

    /// What the next execution of a plan over it reads.
    pub fn put(&self, batch: RecordBatch) -> Result<()> {
        *self.batch.lock().map_err(|_| anyhow::anyhow!("SQL slot poisoned"))? = Some(batch);
        Ok(())
    }

    /// As a table, for SQL to read by name.
    pub fn table(self: &Arc<Self>) -> Result<StreamingTable> {
        StreamingTable::try_new(self.schema.clone(), vec![self.clone() as Arc<dyn PartitionStream>])
            .context("creating a table over a batch slot")
    }

    /// As the leaf of a physical plan.
    pub fn exec(self: &Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        let exec = StreamingTableExec::try_new(
            self.schema.clone(),
            vec![self.clone() as Arc<dyn PartitionStream>],
            None,
            [],
            false,
            None,
        )
        .context("creating a plan leaf over a batch slot")?;
        Ok(Arc::new(exec))
    }
}
