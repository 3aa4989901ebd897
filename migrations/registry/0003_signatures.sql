-- Task signatures (index format 2): the source data's mean embedding as
-- registry_index::Signature JSON, copied from the manifest's [signature];
-- NULL for packages without one.
ALTER TABLE versions ADD COLUMN signature TEXT;
