"""Pool objects: plain dataclasses with their XML (de)serialisation, no I/O."""
