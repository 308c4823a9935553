//! Non-windowed aggregation over a stream.

use super::*;

impl Translator<'_> {
    /// A non-windowed aggregation over a stream: one [`GroupAggregate`]
    /// after a hash exchange on its keys, sending updates.
    pub(super) fn group_aggregate(
        &mut self,
        input: Stream,
        spec: Arc<AggregateSpec>,
        partitioning: Partitioning,
        parallelism: usize,
        schema: &DFSchemaRef,
    ) -> Result<Planned> {
        let input_updates = self.updates(input.node);
        let accumulations = spec
            .aggregates
            .iter()
            .map(|a| Accumulation::of(a, input.schema.inner(), input_updates))
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(|e| {
                self.error(format!(
                    "{e}; the input updates because of {}",
                    self.origin_of_updates(input.node)
                ))
            })?;
        let node = self.add_operator(
            input.node,
            Arc::new(GroupAggregate {
                spec,
                accumulations,
                input_updates,
                ttl: self.state_ttl,
            }),
            crate::changelog::with_row_kind(schema.inner()),
            partitioning,
            parallelism,
        );
        Ok(Planned::Stream(Stream {
            node,
            schema: Arc::clone(schema),
        }))
    }
}
