from tinygen.cli import main

main()
