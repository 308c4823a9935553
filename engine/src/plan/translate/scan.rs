//! The rule of a table scan: the table's shared source, with this scan's
//! columns selected from what the source reads.

use super::*;

impl Translator<'_> {
    pub(super) fn scan(&mut self, scan: &logical::TableScan) -> Result<Planned> {
        let Some(table) =
            (scan.source.as_ref() as &dyn std::any::Any).downcast_ref::<DeclaredTable>()
        else {
            return Err(self.error(format!("cannot read `{}`", scan.table_name)));
        };
        if !scan.filters.is_empty() || scan.fetch.is_some() {
            return Err(self.error("filters and limits pushed into scans are not supported"));
        }
        let (node, read) = self
            .sources
            .get(&table.0.name)
            .cloned()
            .ok_or_else(|| self.error(format!("no source for `{}`", table.0.name)))?;
        let wanted: Vec<usize> = scan
            .projection
            .clone()
            .unwrap_or_else(|| (0..table.0.schema.fields().len()).collect());
        let stream = Stream {
            node,
            schema: Arc::clone(&scan.projected_schema),
        };
        if wanted == read {
            return Ok(Planned::Stream(stream));
        }
        // Select this scan's columns from what the shared source reads.
        let source_schema = self.graph.node(node).schema.clone();
        let exprs: Vec<Arc<dyn PhysicalExpr>> = wanted
            .iter()
            .map(|c| {
                // The source reads every column any scan of it wants.
                let at = read.iter().position(|r| r == c).ok_or_else(|| {
                    self.error(format!(
                        "the source of `{}` does not read its column {c}",
                        table.0.name
                    ))
                })?;
                Ok(
                    Arc::new(datafusion::physical_expr::expressions::Column::new(
                        source_schema.field(at).name(),
                        at,
                    )) as Arc<dyn PhysicalExpr>,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut exprs = exprs;
        if self.updates(node) {
            exprs.push(Arc::new(
                datafusion::physical_expr::expressions::Column::new(
                    crate::changelog::ROW_KIND,
                    read.len(),
                ),
            ));
        }
        let schema = self.physical_schema(scan.projected_schema.inner(), node);
        let project = Project::new(exprs, Arc::clone(&schema));
        let id = self.add_operator(
            node,
            Arc::new(project),
            schema,
            Partitioning::Forward,
            self.parallelism,
        );
        Ok(Planned::Stream(Stream {
            node: id,
            schema: Arc::clone(&scan.projected_schema),
        }))
    }
}
