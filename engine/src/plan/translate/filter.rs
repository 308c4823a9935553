//! The rule of a filter, over rows or over a pending window.

use super::*;

impl Translator<'_> {
    /// A filter of rows is one `Filter`; one of a pending window filters
    /// the window's input, as long as it reads no window column.
    pub(super) fn filter(&mut self, f: &logical::Filter, input: Input) -> Result<Planned> {
        match input.planned {
            Planned::Stream(input) => {
                let predicate = self.physical(&f.predicate, &input.schema)?;
                let id = self.add_filter(&input, predicate);
                Ok(Planned::Stream(Stream {
                    node: id,
                    schema: Arc::clone(f.input.schema()),
                }))
            }
            Planned::Window(mut window) => {
                let predicate = self.to_window_input(&f.predicate, &window)?;
                let predicate = self.physical(&predicate, &window.input.schema)?;
                window.input.node = self.add_filter(&window.input, predicate);
                window.schema = Arc::clone(f.input.schema());
                Ok(Planned::Window(window))
            }
        }
    }

    fn add_filter(&mut self, input: &Stream, predicate: Arc<dyn PhysicalExpr>) -> NodeId {
        let parallelism = self.graph.node(input.node).parallelism;
        let schema = self.physical_schema(input.schema.inner(), input.node);
        self.add_operator(
            input.node,
            Arc::new(Filter::new(predicate)),
            schema,
            Partitioning::Forward,
            parallelism,
        )
    }
}
