"""The domain, free of protocols and SQL: model, query plans, Catalogue and Circulation."""
