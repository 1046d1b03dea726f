from anatomix.cli import main

main()
