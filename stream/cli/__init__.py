"""The ``streamrec`` console script: one module per subcommand."""
