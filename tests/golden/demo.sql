-- make demo's output is part of the contract.
.read sql/demo.sql
