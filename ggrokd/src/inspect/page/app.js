// The inspector page: see ggrokd/src/inspect/api.rs for the API it uses.
