"""Images and datastores through DATASTORE_MAD (mirrors ``src/image``)."""
