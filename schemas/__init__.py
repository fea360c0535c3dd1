"""Wire contracts of the roomserver, shared with the services that produce its input and
consume its output. Importable on its own (no dependency on `processor`).

==================  ============================================================
module              contents
==================  ============================================================
`schemas.input`     `InputRoomEvent`: a message on the input topic
`schemas.output`    the output events (a union tagged by ``type``), `reassemble`
`schemas.dead_letter` `DeadLetter`, `DeadLetterReason`
`schemas.pdu`       the PDU in each room version's wire format, and its limits
`schemas.codecs`    `decode_input`, `decode_output`, `decode_dead_letter` and encoders
`schemas.errors`    `SchemaError`, `InvalidEvent`, `EventTooLarge`
`schemas.export`    ``python -m schemas.export``: JSON Schema files in `schemas/jsonschema`
==================  ============================================================
"""
