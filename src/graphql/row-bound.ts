import { type ASTVisitor, GraphQLError, type GraphQLObjectType, Kind, type SelectionSetNode, type ValidationContext } from 'graphql'

/** How many objects a list field may answer: its `limit` argument when it has one (its most when a variable), else `max`. */
export interface ListBound {
  max: number
  limitArg?: string
}

/**
 * The object type under a field's list and non-null wrappers; undefined for a
 * scalar or enum. By shape, not graphql's `isObjectType`: under the test
 * runner yoga's schema may come from graphql's CommonJS build and this module
 * from its ESM one, and graphql refuses a type "from another module".
 */
function objectType(type: unknown): GraphQLObjectType | undefined {
  let t = type as { ofType?: unknown; getFields?: unknown } | null | undefined
  while (t?.ofType) t = t.ofType as typeof t
  return typeof t?.getFields === 'function' ? (t as GraphQLObjectType) : undefined
}

/**
 * A validation rule: the most objects a query could answer, with every page
 * full and every list at its bound, multiplied down each path (a page of 100
 * products, each with 20 orders of 50 lines, is 100,000), must stay within
 * `maxObjects`. graphql-armor's cost multiplies by `first`/`last` only, and by
 * literals only; a page here is `limit`, often a variable. A query over the
 * bound is handed to `reject`, before anything runs.
 *
 * @example
 * ```ts
 * addValidationRule(objectBoundRule({ 'Query.products': { max: 100, limitArg: 'limit' } }, 10_000, reject))
 * ```
 */
export function objectBoundRule(
  bounds: Record<string, ListBound>,
  maxObjects: number,
  reject: (context: ValidationContext, error: GraphQLError) => void,
) {
  return (context: ValidationContext): ASTVisitor => {
    const objects = (type: GraphQLObjectType, set: SelectionSetNode, times: number, fragments: Set<string>): number => {
      let total = 0
      for (const node of set.selections) {
        if (node.kind === Kind.FIELD) {
          const field = type.getFields()[node.name.value]
          const inner = field && objectType(field.type)
          if (!field || !inner || !node.selectionSet) continue
          const bound = bounds[`${type.name}.${field.name}`]
          let n = 1
          if (bound) {
            const given = bound.limitArg ? node.arguments?.find((a) => a.name.value === bound.limitArg) : undefined
            const byDefault = field.args.find((a) => a.name === bound.limitArg)?.defaultValue
            n =
              given?.value.kind === Kind.INT
                ? Math.min(Number(given.value.value), bound.max)
                : given === undefined && typeof byDefault === 'number'
                  ? byDefault
                  : bound.max
          }
          total += times * n + objects(inner, node.selectionSet, times * n, fragments)
        } else if (node.kind === Kind.INLINE_FRAGMENT) {
          const on = node.typeCondition ? objectType(context.getSchema().getType(node.typeCondition.name.value)) : type
          if (on) total += objects(on, node.selectionSet, times, fragments)
        } else if (!fragments.has(node.name.value)) {
          // A fragment spread; a cycle of fragments is another rule's error, counted once here.
          const fragment = context.getFragment(node.name.value)
          const on = fragment && objectType(context.getSchema().getType(fragment.typeCondition.name.value))
          if (on) total += objects(on, fragment!.selectionSet, times, new Set([...fragments, node.name.value]))
        }
      }
      return total
    }
    return {
      OperationDefinition(operation) {
        const root = objectType(context.getSchema().getRootType(operation.operation))
        if (!root) return
        const n = objects(root, operation.selectionSet, 1, new Set())
        if (n > maxObjects)
          reject(
            context,
            new GraphQLError(
              `This query could answer up to ${n.toLocaleString('en')} objects, more than ${maxObjects.toLocaleString('en')}: ask for smaller pages`,
            ),
          )
      },
    }
  }
}
