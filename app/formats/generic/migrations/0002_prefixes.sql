-- The first segment of every path a local repository has held ("internal/" for a folder,
-- "notes.txt" for a top-level file), folded as the virtual repositories' guard compares
-- names (NFKC, case-folded): a virtual asks whether a local member holds a spelling with
-- one indexed lookup, not a scan of the repository's top level. Kept when the files go,
-- as PyPI keeps a project's row: a name once the team's stays guarded.
-- The row with folded = '' says the repository's earlier files were taken in (files
-- written before this table are folded once, by the first guard check that needs them).

CREATE TABLE generic_prefixes (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    folded TEXT NOT NULL,
    PRIMARY KEY (repository_id, folded)
);
