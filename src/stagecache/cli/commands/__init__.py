"""One module per group of commands; each command is a function ``(args, ctx) -> exit code`` that calls
one library function and renders what it returns (:data:`stagecache.cli.parser.HANDLERS`)."""
