"""The `webshop` environment: a shop with real search, WebShop's pages, actions and reward."""
