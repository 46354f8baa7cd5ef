from modemgw.cli import main

main()
