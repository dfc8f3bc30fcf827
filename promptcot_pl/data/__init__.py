"""Data floor: records and their JSONL files (`records`, `jsonl`, `released`), prompt formats and the conditionals
as (prompt, target) text (`formats`, `prompts`), tokenisation and collation (`encode`, `collate`,
`shared_prefix`, `sharding`), concept banks and text filters (`concepts`, `filters`). No Lightning, no torch
training code: tensors at most."""
