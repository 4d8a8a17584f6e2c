//! `ScopeFilterExec`: keeps only the rows of the systems a principal may see, below any
//! expression of theirs. It is opaque to the optimizer (no filter is pushed through it), so
//! a user's expression never runs on another company's rows, even one that would fail
//! (`1 / (system_id - 5)`) and so tell that such a row exists.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, UInt32Array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use roaring::RoaringBitmap;

/// Rows of `input` whose `system_id` (column `system_column`) is in `systems`, projected to
/// `projection`.
#[derive(Debug)]
pub struct ScopeFilterExec {
    input: Arc<dyn ExecutionPlan>,
    systems: Arc<RoaringBitmap>,
    system_column: usize,
    projection: Vec<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ScopeFilterExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        systems: Arc<RoaringBitmap>,
        system_column: usize,
        projection: Vec<usize>,
    ) -> Result<Self> {
        let schema = Arc::new(input.schema().project(&projection)?);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            systems,
            system_column,
            projection,
            schema,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for ScopeFilterExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ScopeFilterExec: systems={}", self.systems.len())
    }
}

fn keep_scoped(
    batch: &RecordBatch,
    systems: &RoaringBitmap,
    system_column: usize,
    projection: &[usize],
) -> Result<RecordBatch> {
    let ids = batch
        .column(system_column)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .ok_or_else(|| DataFusionError::Internal("system_id is not u32".to_owned()))?;
    let keep: BooleanArray = (0..ids.len())
        .map(|i| Some(ids.is_valid(i) && systems.contains(ids.value(i))))
        .collect();
    Ok(filter_record_batch(batch, &keep)?.project(projection)?)
}

impl ExecutionPlan for ScopeFilterExec {
    fn name(&self) -> &str {
        "ScopeFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)] // the 55.0 name for it; `replace_children` calls it
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("ScopeFilterExec has one child".to_owned()))?;
        Ok(Arc::new(Self::try_new(
            input,
            Arc::clone(&self.systems),
            self.system_column,
            self.projection.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let systems = Arc::clone(&self.systems);
        let (column, projection) = (self.system_column, self.projection.clone());
        let rows = input.map(move |batch| keep_scoped(&batch?, &systems, column, &projection));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            rows,
        )))
    }
}
