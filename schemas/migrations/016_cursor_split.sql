-- A large beneficiary's EOBs are read by narrower searches (issue 16: CMS's backend builds the
-- whole matching result for every page, so paging one search through thousands of claims
-- costs quadratic time). The run's cursor remembers the split: the searches planned (each a
-- list of [name, value] query parameters) and which of them it is in, so that a resumed sync
-- continues the same searches rather than planning anew from a changed first page.
-- NULL: the resource type is read by its one unsplit search.
ALTER TABLE sync_runs ADD COLUMN cursor_split jsonb;
