from tinygen.cli.main import main

main()
