"""The org stage: what needs an organisation's series together -- the alert engine's window step
(inhibition by the org alert, grouping per team), the org's budgets and its model-mix watch --
fed by the judge partitions' verdicts."""
