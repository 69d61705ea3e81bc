from qkdnet.cli import main

main()
